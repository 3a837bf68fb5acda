"""Pictures of MCNet's memory: the learned meta-memory and, for a source image, its conditioned memory.

  python -m talkingmem.mcnet.tools.visualize_memory --workdir=W --out=memory.png [--source=face.png]
  python -m talkingmem.mcnet.tools.visualize_memory --checkpoint=vox.pth.tar --out=memory.png --source=face.png

Each memory channel is one heatmap (normalised to its own min..max, then a cv2 colormap), tiled in a
grid, as the paper's Fig. 7/9. With --source, a second grid shows the scale-aware memory the ISCM
builds for that face (Fig. 6, last column): `internals['memory']` of the first (deepest) memory call,
with the source as its own driving frame, so the keypoints do not move.
"""
from __future__ import annotations

import math
import pathlib
from typing import Sequence

from absl import flags
import cv2
import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.user_errors import UserInputError, check_output, run_absl
from talkingmem.mcnet import animate
from talkingmem.mcnet.model import MCNet

LABEL_HEIGHT = 20
PANEL_GAP = 8


def meta_memory(variables: dict) -> np.ndarray:
  """The learned meta-memory, (S, S, C)."""
  try:
    return np.asarray(variables["params"]["generator"]["memory_unit"]["memory"])[0]
  except KeyError as e:
    raise ValueError("this model has no memory unit (use_memory=False: the ablation baseline)") from e


def conditioned_memory(loaded: animate.LoadedModel, source: np.ndarray) -> np.ndarray:
  """The source-conditioned memory of the first memory call, (S, S, C), for a (H, W, 3) source."""
  model = loaded.model

  @jax.jit
  def run(variables, image):
    kp = model.apply(variables, image, method=MCNet.detect)
    kp = {k: v for k, v in kp.items() if k in ("value", "jacobian")}
    return model.apply(variables, image, kp, kp, method=MCNet.generate)["memory"][0]["memory"]

  return np.asarray(run(loaded.variables, jnp.asarray(source, jnp.float32)[None]))[0]


def channel_heatmaps(maps: np.ndarray, cell: int, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
  """(S, S, C) maps -> (C, cell, cell, 3) BGR uint8 heatmaps, each channel normalised on its own."""
  maps = np.asarray(maps, np.float64)
  low, high = maps.min(axis=(0, 1)), maps.max(axis=(0, 1))
  norm = (maps - low) / np.maximum(high - low, 1e-12)
  tiles = []
  for c in range(maps.shape[-1]):
    gray = (norm[..., c] * 255 + 0.5).astype(np.uint8)
    gray = cv2.resize(gray, (cell, cell), interpolation=cv2.INTER_NEAREST)
    tiles.append(cv2.applyColorMap(gray, colormap))
  return np.stack(tiles)


def grid_size(num_tiles: int, columns: int, cell: int, pad: int) -> tuple[int, int]:
  """(height, width) of a grid of `num_tiles` cells with `pad` pixels around every cell."""
  columns = min(columns, num_tiles)
  rows = math.ceil(num_tiles / columns)
  return pad + rows * (cell + pad), pad + columns * (cell + pad)


def tile_grid(tiles: np.ndarray, columns: int, pad: int, background: int = 255) -> np.ndarray:
  """(N, cell, cell, 3) tiles -> one image, row-major, white gaps."""
  n, cell = len(tiles), tiles.shape[1]
  height, width = grid_size(n, columns, cell, pad)
  columns = min(columns, n)
  out = np.full((height, width, 3), background, np.uint8)
  for i, tile in enumerate(tiles):
    r, c = divmod(i, columns)
    y, x = pad + r * (cell + pad), pad + c * (cell + pad)
    out[y:y + cell, x:x + cell] = tile
  return out


def labelled(image: np.ndarray, label: str) -> np.ndarray:
  """`image` under a white strip with `label` in it."""
  strip = np.full((LABEL_HEIGHT, image.shape[1], 3), 255, np.uint8)
  cv2.putText(strip, label, (4, LABEL_HEIGHT - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
  return np.concatenate([strip, image])


def memory_figure(panels: Sequence[tuple[str, np.ndarray]], columns: int = 32, cell: int = 32, pad: int = 2,
                  colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
  """Labelled channel grids of (S, S, C) memories, stacked vertically; BGR uint8 (for cv2.imwrite)."""
  images = [labelled(tile_grid(channel_heatmaps(m, cell, colormap), columns, pad), label)
            for label, m in panels]
  width = max(i.shape[1] for i in images)
  gap = np.full((PANEL_GAP, width, 3), 255, np.uint8)
  parts = []
  for i, image in enumerate(images):
    if i:
      parts.append(gap)
    parts.append(np.pad(image, ((0, 0), (0, width - image.shape[1]), (0, 0)), constant_values=255))
  return np.concatenate(parts)


def figure_size(num_channels: int, num_panels: int, columns: int = 32, cell: int = 32, pad: int = 2
                ) -> tuple[int, int]:
  """(height, width) of `memory_figure` for memories of `num_channels` channels."""
  h, w = grid_size(num_channels, columns, cell, pad)
  return num_panels * (h + LABEL_HEIGHT) + (num_panels - 1) * PANEL_GAP, w


def write_memory_figure(loaded: animate.LoadedModel, out: str | pathlib.Path, source_path: str | None = None,
                        crop: bool = True, columns: int = 32, cell: int = 32, pad: int = 2) -> np.ndarray:
  """Writes the PNG; returns it (BGR)."""
  meta = meta_memory(loaded.variables)
  panels = [(f"meta-memory ({meta.shape[-1]} channels)", meta)]
  if source_path:
    source = animate.prepare_source(animate.read_image(source_path), loaded.image_size, crop,
                                    name=f"the source image {source_path}")
    label = f"memory conditioned on {pathlib.Path(source_path).name}"
    panels.append((label, conditioned_memory(loaded, source)))
  image = memory_figure(panels, columns, cell, pad)
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_name(f".{out.name}.tmp{out.suffix}")  # Renamed into place when whole.
  if not cv2.imwrite(str(tmp), image):
    raise OSError(f"could not write {out}")
  tmp.replace(out)
  return image


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Only when run as a program: importing this module must not clash with other modules' flags."""
  flags.DEFINE_string("workdir", None, "Training workdir (our Orbax checkpoints and config.json).")
  flags.DEFINE_string("checkpoint", None, "Official MCNet .pth.tar (instead of --workdir).")
  flags.DEFINE_integer("step", None, "Checkpoint step in --workdir (default: the latest).")
  flags.DEFINE_string("out", None, "Output PNG.")
  flags.DEFINE_string("source", None, "Source image: adds its conditioned memory.")
  flags.DEFINE_bool("no_crop", False, "Use the whole source image (centred square) instead of a face crop.")
  flags.DEFINE_integer("columns", 32, "Channels per grid row.")
  flags.DEFINE_integer("cell", 32, "Pixels per channel heatmap.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise UserInputError(f"unexpected arguments {argv[1:]}; flags are written --name=value")
  if not FLAGS.out:
    raise UserInputError("--out=<figure.png> is required")
  check_output(FLAGS.out, "--out", (FLAGS.source, FLAGS.workdir, FLAGS.checkpoint), (".png", ".jpg"))
  loaded = animate.load_model(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step)
  image = write_memory_figure(loaded, FLAGS.out, FLAGS.source, not FLAGS.no_crop, FLAGS.columns, FLAGS.cell)
  print(f"wrote {FLAGS.out} ({image.shape[1]}x{image.shape[0]})")


if __name__ == "__main__":
  define_flags()
  run_absl(main)
