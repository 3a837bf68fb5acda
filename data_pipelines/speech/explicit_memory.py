"""MemFace's explicit memory of the neural renderer (paper Sec. 3.3, supplement A.1), host side.

Per speaker: keys = mouth-vertex coordinates (M, 3) flattened, values = the image patches of the
mouth region of the same frames, for N frames chosen from the speaker's training video so that
their mouth shapes are mutually most dissimilar by RMS vertex distance (N = 300 in the paper).
Built from a new speaker's video when adapting (nothing in it is learned); stored per speaker as a
.npz (`save_explicit_memory` / `load_explicit_memory`). The renderer reads it with attention
(talkingmem/memface/renderer.py).

Arrays of a memory (a dict):
  keys        (N, M*3) float32  mouth vertices, model space (pose-free)
  values      (N, p, p, 3) float32 in [0, 1]  mouth patches
  frame_ids   (N,) int64  the frame each slot came from (index into the frames given)
  valid       (N,) bool   False for padding slots (a video with fewer than N frames)
  key_mean    (M*3,) float32, key_scale () float32: mean and RMS spread of the speaker's mouth
              shapes (over all its frames), so the attention temperature is unit-free
"""
from __future__ import annotations

import json
import os
import pathlib
import zipfile
from typing import Any, Mapping, Sequence

import numpy as np

from data_pipelines.speech import renderer_inputs
from data_pipelines.user_errors import UserInputError

ARRAYS = ("keys", "values", "frame_ids", "valid", "key_mean", "key_scale")


def rms_distances(points: np.ndarray, point: np.ndarray) -> np.ndarray:
  """RMS distance of each row of (T, D) `points` to one (D,) `point`."""
  return np.sqrt(np.mean((points - point) ** 2, axis=-1))


def greedy_select(mouth_vertices: np.ndarray, n: int) -> np.ndarray:
  """The paper's greedy selection of the n most dissimilar mouth shapes (farthest-point order).

  Start rule: the first pick is the frame FARTHEST from the mean mouth shape (the most extreme
  shape; the lowest index wins ties). Then, repeatedly, the frame whose RMS vertex distance to its
  nearest already-picked frame is largest (lowest index on ties). Frames identical to a picked one
  (distance 0) are only taken once every other frame is; the result never repeats a frame and has
  min(n, T) entries, in pick order.

  Args:
    mouth_vertices: (T, M, 3) (or (T, D)) mouth vertices per frame.
    n: how many to pick.
  """
  points = np.asarray(mouth_vertices, np.float64).reshape(len(mouth_vertices), -1)
  if not len(points):
    raise ValueError("no frames to select from")
  if n <= 0:
    raise ValueError(f"n must be positive, got {n}")
  n = min(n, len(points))
  first = int(np.argmax(rms_distances(points, points.mean(0))))
  chosen = [first]
  nearest = rms_distances(points, points[first])
  taken = np.zeros(len(points), bool)
  taken[first] = True
  for _ in range(n - 1):
    score = np.where(taken, -1.0, nearest)
    pick = int(np.argmax(score))
    chosen.append(pick)
    taken[pick] = True
    nearest = np.minimum(nearest, rms_distances(points, points[pick]))
  return np.asarray(chosen, np.int64)


def _patch(frame: np.ndarray, box: Sequence[int], patch_size: int) -> np.ndarray:
  return renderer_inputs.to_float_image(renderer_inputs.crop_patch(np.asarray(frame), box),
                                        patch_size)


def build_explicit_memory(mouth_vertices: np.ndarray, frames: Any, mouth_boxes: np.ndarray,
                          n: int = 300, patch_size: int | None = None) -> dict[str, np.ndarray]:
  """A speaker's memory (module docstring) from its training frames.

  Args:
    mouth_vertices: (T, M, 3) per frame.
    frames: (T, H, W, 3) uint8 or [0, 1] float frames, or any sequence indexable by frame number
      (only the chosen frames are read).
    mouth_boxes: (T, 4) (y0, x0, y1, x1) mouth boxes (`renderer_inputs.mouth_box`) in the frames'
      pixels.
    n: slots N; with fewer frames the rest are padding (valid=False).
    patch_size: side p of the stored patches (default: the first box's side); crops are resized.
  """
  vertices = np.asarray(mouth_vertices, np.float32)
  boxes = np.asarray(mouth_boxes)
  if vertices.ndim != 3 or vertices.shape[-1] != 3:
    raise ValueError(f"mouth_vertices must be (T, M, 3), got {vertices.shape}")
  if boxes.shape != (len(vertices), 4):
    raise ValueError(f"mouth_boxes must be (T, 4) = {(len(vertices), 4)}, got {boxes.shape}")
  if len(frames) != len(vertices):
    raise ValueError(f"{len(frames)} frames for {len(vertices)} mouth-vertex frames")
  if patch_size is None:
    patch_size = int(boxes[0, 2] - boxes[0, 0])
  flat = vertices.reshape(len(vertices), -1)
  chosen = greedy_select(flat, n)
  slots = np.resize(chosen, n)  # Padding repeats picks (masked out by `valid`).
  values = np.stack([_patch(frames[i], boxes[i], patch_size) for i in chosen])
  values = values[np.resize(np.arange(len(chosen)), n)]
  mean = flat.mean(0)
  scale = float(np.sqrt(np.mean((flat - mean) ** 2)))
  return {"keys": flat[slots].astype(np.float32), "values": values.astype(np.float32),
          "frame_ids": slots.astype(np.int64), "valid": np.arange(n) < len(chosen),
          "key_mean": mean.astype(np.float32), "key_scale": np.float32(max(scale, 1e-8))}


def check_memory(memory: Mapping[str, np.ndarray], source: str = "memory", *,
                 size: int | None = None, key_dim: int | None = None,
                 patch_size: int | None = None) -> None:
  """Raises UserInputError naming the problem if arrays are missing or shapes disagree (with each other
  or with the expected N / key dimension / patch size)."""
  missing = [k for k in ARRAYS if k not in memory]
  if missing:
    raise UserInputError(f"{source}: missing arrays {missing}; rebuild it with "
                     "data_pipelines.speech.explicit_memory.build_explicit_memory")
  keys, values = np.asarray(memory["keys"]), np.asarray(memory["values"])
  n = len(keys)
  problems = []
  if keys.ndim != 2:
    problems.append(f"keys must be (N, M*3), got {keys.shape}")
  if values.ndim != 4 or values.shape[0] != n or values.shape[1] != values.shape[2] or \
      values.shape[3] != 3:
    problems.append(f"values must be (N={n}, p, p, 3), got {values.shape}")
  for name, shape in (("frame_ids", (n,)), ("valid", (n,)), ("key_scale", ()),
                      ("key_mean", keys.shape[1:])):
    if np.shape(memory[name]) != shape:
      problems.append(f"{name} must be {shape}, got {np.shape(memory[name])}")
  if size is not None and n != size:
    problems.append(f"{n} slots, the model expects {size} (config model.memory_size)")
  if key_dim is not None and keys.ndim == 2 and keys.shape[1] != key_dim:
    problems.append(f"keys have {keys.shape[1]} coordinates, the model's mouth vertices give "
                    f"{key_dim} (a different face model or mouth_vertex_ids?)")
  if patch_size is not None and values.ndim == 4 and values.shape[1] != patch_size:
    problems.append(f"patches are {values.shape[1]} px, the model expects {patch_size} "
                    "(config model.patch_size)")
  if problems:
    raise UserInputError(f"{source}: " + "; ".join(problems))


def save_explicit_memory(path: str | os.PathLike, memory: Mapping[str, np.ndarray],
                         meta: Mapping[str, Any] | None = None) -> pathlib.Path:
  """Writes one speaker's memory as .npz (atomically), with `meta` (JSON-able) stored as text."""
  check_memory(memory, str(path))
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
  np.savez(tmp, **{k: np.asarray(memory[k]) for k in ARRAYS},
           meta=np.asarray(json.dumps(dict(meta or {}))))
  os.replace(tmp, path)
  return path


def load_explicit_memory(path: str | os.PathLike, *, size: int | None = None,
                         key_dim: int | None = None, patch_size: int | None = None
                         ) -> dict[str, Any]:
  """A memory saved by `save_explicit_memory`: its arrays plus 'meta' (a dict); checked against the
  expected N / key dimension / patch size when given (ValueError saying what differs)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserInputError(f"{path}: no explicit memory there; build one with "
                         "build_explicit_memory + save_explicit_memory (or let the renderer "
                         "task build it from the speaker's training frames)")
  try:
    with np.load(path, allow_pickle=False) as data:
      memory: dict[str, Any] = {k: data[k] for k in data.files if k != "meta"}
      meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # not an .npz, truncated, pickled
    raise UserInputError(f"{path} is not a readable explicit-memory .npz ({type(e).__name__}: {e}); "
                         "give the file save_explicit_memory wrote") from e
  check_memory(memory, str(path), size=size, key_dim=key_dim, patch_size=patch_size)
  memory["meta"] = meta
  return memory


def stack_memories(memories: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Speaker memories (same N, key size, patch size) -> arrays with a leading speaker axis."""
  if not memories:
    raise ValueError("no memories to stack")
  first = memories[0]
  for i, m in enumerate(memories):
    check_memory(m, f"memory {i}", size=len(first["keys"]), key_dim=first["keys"].shape[1],
                 patch_size=first["values"].shape[1])
  return {k: np.stack([np.asarray(m[k]) for m in memories]) for k in ARRAYS}
