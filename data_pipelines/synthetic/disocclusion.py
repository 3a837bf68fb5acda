"""Ground-truth disocclusion masks of the synthetic video set, for any source/driving frame pair.

Each clip's metadata `.npz` holds `surface` (T, H, W) int32: the head-mesh triangle seen at each pixel,
-1 where no head surface is seen, and `visible_triangles` (T, F) bool: the triangles seen anywhere at
the renderer's supersampled resolution (written by the renderer). A driving pixel is disoccluded when what it
shows cannot be found in the source frame: a head triangle the source does not show anywhere (turned
away, behind an occluder, outside the frame), or background/body that the head covers in the source.
Visibility is per triangle (the mesh's resolution), which is the ground truth the renderer has.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def disocclusion_mask(surface_source: np.ndarray, surface_driving: np.ndarray,
                      visible_source: np.ndarray | None = None) -> np.ndarray:
  """(H, W) surface maps of a source and a driving frame -> (H, W) bool mask on the driving frame.

  visible_source: (F,) bool triangles the source shows; defaults to those in its surface map (which
  misses triangles smaller than a pixel, so pass the stored set when there is one).
  """
  if surface_source.shape != surface_driving.shape:
    raise ValueError(f"surface maps differ in shape: {surface_source.shape} vs {surface_driving.shape}")
  if visible_source is None:
    visible = np.unique(surface_source[surface_source >= 0])
  else:
    visible = np.flatnonzero(visible_source)
  head = surface_driving >= 0
  hidden_surface = head & ~np.isin(surface_driving, visible)
  hidden_background = ~head & (surface_source >= 0)
  return hidden_surface | hidden_background


def clip_masks(surface: np.ndarray, source_index: int = 0, visible: np.ndarray | None = None) -> np.ndarray:
  """(T, H, W) surface maps (and (T, F) visible sets) of a clip -> (T, H, W) masks of every frame
  against frame `source_index`."""
  seen = None if visible is None else visible[source_index]
  return np.stack([disocclusion_mask(surface[source_index], s, seen) for s in surface])


def video_masks(store: Any, video: Any, size: tuple[int, int]) -> np.ndarray | None:
  """(T, H, W) masks of every frame of a store's video against its frame 0 (the FOMM reconstruction
  protocol's source) at `size`, from the video's metadata; None when it has no surface maps (real
  data). Resized by nearest neighbour: a mask stays a mask."""
  meta = store.metadata(video) if hasattr(store, "metadata") else None
  if not meta or "surface" not in meta:
    return None
  visible = np.asarray(meta["visible_triangles"]) if "visible_triangles" in meta else None
  masks = clip_masks(np.asarray(meta["surface"]), 0, visible)
  rows = (np.arange(size[0]) * masks.shape[1] // size[0]).astype(int)
  cols = (np.arange(size[1]) * masks.shape[2] // size[1]).astype(int)
  return masks[:, rows][:, :, cols]
