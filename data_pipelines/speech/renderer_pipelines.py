"""Frames for MemFace's neural renderer (stage 2): per-frame examples, explicit memories, Grain.

Data: the per-speaker layout of `data_pipelines/speech/layout.py` (synthetic speech with
`--render`, or prepare_speaker folders) where each clip also has its 25 fps video as `video.mp4` or
`frames/`.
Coefficients come from coeffs.npz; the camera is the synthetic renderer's unless coeffs.npz holds
`crop_focal` (N,) / `crop_principal` (N, 2) (prepare_speaker's pinhole, see renderer_inputs).

An example (one frame; images float32 in [0, 1] at `image_size`):
  rendered (H, W, 3)   masked (H, W, 3)   mask (H, W, 1)   target (H, W, 3)
  mouth_vertices (M*3,) float32   mouth_box (4,) int32 (y0, x0, y1, x1)
  speaker () int32 (index into store.speakers)
  frame () int32: the frame's number among its speaker's TRAINING frames (the numbering of the
    explicit memory's frame_ids), -1 for held-out frames
  valid () bool (evaluation only: False for batch padding)

Per-clip inputs are computed on first use (a z-buffer render per frame, a few ms at 64 px) and
kept in memory as uint8 (about 3 x H x W x 3 bytes per frame).
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from data_pipelines import grain_utils
from data_pipelines import video_io
from data_pipelines.speech import explicit_memory
from data_pipelines.speech import layout as speech_layout
from data_pipelines.speech import renderer_inputs
from data_pipelines.speech.layout import ClipEntry

VIDEO_NAMES = ("video.mp4", "frames")


@dataclasses.dataclass
class RendererDataConfig:
  """Settings of the renderer data (a ConfigDict with these fields works too; extras ignored).

  Attributes:
    root: dataset root (speech_layout with videos).
    image_size: frames are resized to this.
    patch_size: the mouth box side at image_size (the explicit memory's patch size).
    batch_size / eval_batch_size: GLOBAL batch sizes.
    seed, split_seed, test_fraction, test_speakers: as the speech pipelines.
    eval_stride: every eval_stride-th held-out frame is evaluated.
    read_threads, num_epochs: Grain reading.
  """
  root: str = ""
  image_size: int = 64
  patch_size: int = 16
  batch_size: int = 16
  eval_batch_size: int | None = None
  seed: int = 0
  split_seed: int = 0
  test_fraction: float = 0.1
  test_speakers: Any = 0
  eval_stride: int = 1
  read_threads: int = 2
  num_epochs: int | None = None
  train_split: str = "train"
  eval_split: str = "test"


def as_renderer_config(config: Any) -> RendererDataConfig:
  """RendererDataConfig from itself, a dict, a ConfigDict or an attribute object (extras
  ignored)."""
  return grain_utils.config_from(RendererDataConfig, config, tuple_fields=("test_speakers",))


def find_video(clip_dir) -> Any:
  for name in VIDEO_NAMES:
    if (clip_dir / name).exists():
      return clip_dir / name
  raise speech_layout.SpeechLayoutError(
      clip_dir, "no video for the renderer: needs video.mp4 or frames/ (generate synthetic data "
      "with `python -m data_pipelines.synthetic.speech_set --render`, or prepare real video with "
      "`python -m data_pipelines.speech.prepare_speaker`)")


class RendererStore:
  """Clips, split, speakers, face model and cached per-clip renderer inputs."""

  def __init__(self, config: Any):
    self.config = cfg = as_renderer_config(config)
    self.clips = speech_layout.list_clips(cfg.root)
    self.splits = speech_layout.split_clips(self.clips, cfg.test_fraction, cfg.test_speakers,
                                            cfg.split_seed)
    self.speakers = speech_layout.speaker_names(self.clips)
    self.face_model = speech_layout.load_face_model(cfg.root, self.clips)
    if self.face_model is None:
      raise speech_layout.SpeechLayoutError(
          cfg.root, f"no {speech_layout.FACE_MODEL}: the renderer projects the 3DMM of the "
          "coefficients; put it in the root or the speaker folders")
    for clip in self.clips:
      find_video(clip.path)
    self._cache: dict[str, dict[str, np.ndarray]] = {}
    self._lock = threading.Lock()
    self._clip_locks: dict[str, threading.Lock] = {}
    # Training-frame numbering per speaker: entry -> offset of its first frame.
    self.train_offsets: dict[tuple[str, int, int], int] = {}
    self.train_frames: dict[str, int] = {s: 0 for s in self.speakers}
    for entry in self.splits[cfg.train_split]:
      self.train_offsets[_entry_key(entry)] = self.train_frames[entry.speaker]
      self.train_frames[entry.speaker] += entry.length

  @property
  def mouth_dim(self) -> int:
    return 3 * len(self.face_model.mouth_vertex_ids)

  def speaker_id(self, clip: ClipEntry) -> int:
    return self.speakers.index(clip.speaker)

  def clip_arrays(self, clip: ClipEntry) -> dict[str, np.ndarray]:
    """Whole-clip inputs (cached): rendered, target (T, H, W, 3) uint8, mask (T, H, W) uint8,
    mouth_vertices (T, M*3) float32, mouth_box (T, 4) int32."""
    key = str(clip.path)
    with self._lock:
      if key in self._cache:
        return self._cache[key]
      lock = self._clip_locks.setdefault(key, threading.Lock())
    with lock:  # One thread computes a clip; the others wait for it.
      with self._lock:
        if key in self._cache:
          return self._cache[key]
      arrays = self._compute(clip)
      with self._lock:
        self._cache[key] = arrays
      return arrays

  def _compute(self, clip: ClipEntry) -> dict[str, np.ndarray]:
    cfg = self.config
    frames = video_io.read_video(find_video(clip.path))
    coeffs = speech_layout.read_coeffs(clip.path / speech_layout.COEFFS)
    if "pose" not in coeffs:
      raise speech_layout.SpeechLayoutError(clip.path / speech_layout.COEFFS,
                                            "needs 'pose' (T, 6) to project the face")
    if len(frames) != clip.num_frames:
      raise speech_layout.SpeechLayoutError(
          find_video(clip.path), f"{len(frames)} frames, {speech_layout.COEFFS} has "
          f"{clip.num_frames}")
    with np.load(clip.path / speech_layout.COEFFS) as data:
      focal = data["crop_focal"] if "crop_focal" in data.files else None
      principal = data["crop_principal"] if "crop_principal" in data.files else None
    size, t = cfg.image_size, clip.num_frames
    out = {"rendered": np.zeros((t, size, size, 3), np.uint8),
           "target": np.zeros((t, size, size, 3), np.uint8),
           "mask": np.zeros((t, size, size), np.uint8),
           "mouth_vertices": np.zeros((t, self.mouth_dim), np.float32),
           "mouth_box": np.zeros((t, 4), np.int32)}
    for i in range(t):
      ex = renderer_inputs.renderer_example(
          frames[i], self.face_model, coeffs["exp"][i], coeffs["id"], coeffs["pose"][i], size,
          focal=None if focal is None else float(focal[i]),
          principal=None if principal is None else tuple(principal[i]), patch=cfg.patch_size)
      for name in ("rendered", "target"):
        out[name][i] = np.round(ex[name] * 255).astype(np.uint8)
      out["mask"][i] = ex["mask"][..., 0] > 0.5
      out["mouth_vertices"][i] = ex["mouth_vertices"].reshape(-1)
      out["mouth_box"][i] = ex["mouth_box"]
    return out

  def example(self, clip: ClipEntry, t: int) -> dict[str, np.ndarray]:
    """Frame t (clip-relative, in [clip.start, clip.end)) as a float example."""
    a = self.clip_arrays(clip)
    target = a["target"][t].astype(np.float32) / 255
    mask = a["mask"][t].astype(np.float32)[..., None]
    offset = self.train_offsets.get(_entry_key(clip))
    return {"rendered": a["rendered"][t].astype(np.float32) / 255,
            "masked": target * (1 - mask), "mask": mask, "target": target,
            "mouth_vertices": a["mouth_vertices"][t], "mouth_box": a["mouth_box"][t],
            "speaker": np.int32(self.speaker_id(clip)),
            "frame": np.int32(-1 if offset is None else offset + t - clip.start)}

  def speaker_training_frames(self, speaker: str) -> dict[str, np.ndarray]:
    """target (T, H, W, 3) uint8, mouth_vertices (T, M*3), mouth_box (T, 4) of a speaker's training
    frames, in the memory's frame numbering."""
    entries = [e for e in self.splits[self.config.train_split] if e.speaker == speaker]
    if not entries:
      raise ValueError(f"speaker {speaker!r} has no training frames to build a memory from")
    parts = {"target": [], "mouth_vertices": [], "mouth_box": []}
    for e in entries:
      a = self.clip_arrays(e)
      for k in parts:
        parts[k].append(a[k][e.start:e.end])
    return {k: np.concatenate(v) for k, v in parts.items()}


def _entry_key(entry: ClipEntry) -> tuple[str, int, int]:
  return str(entry.path), entry.start, entry.end


def build_speaker_memories(store: RendererStore, size: int, patch_size: int
                           ) -> dict[str, dict[str, np.ndarray]]:
  """One explicit memory per speaker with training frames (greedy selection, N = size)."""
  out = {}
  for speaker in store.speakers:
    if not store.train_frames.get(speaker):
      continue
    f = store.speaker_training_frames(speaker)
    out[speaker] = explicit_memory.build_explicit_memory(
        f["mouth_vertices"].reshape(len(f["target"]), -1, 3), f["target"], f["mouth_box"], size,
        patch_size)
  return out


# --------------------------------------------------------------------------------------------------
# Grain.


class _Frames:
  """Flat list of (entry, frame) over a split."""

  def __init__(self, entries: Sequence[ClipEntry], stride: int = 1):
    self.items = [(e, t) for e in entries for t in range(e.start, e.end, stride)]

  def __len__(self) -> int:
    return len(self.items)


class _TrainExample(grain.transforms.Map):
  def __init__(self, store: RendererStore, frames: _Frames):
    self._store, self._frames = store, frames

  def map(self, element: tuple[int, int]) -> dict[str, np.ndarray]:
    _, slot = element
    entry, t = self._frames.items[slot % len(self._frames)]
    return self._store.example(entry, t)


class _EvalExample(grain.transforms.Map):
  def __init__(self, store: RendererStore, frames: _Frames):
    self._store, self._frames = store, frames

  def map(self, element: tuple[int, bool]) -> dict[str, np.ndarray]:
    slot, valid = element
    entry, t = self._frames.items[slot]
    out = self._store.example(entry, t)
    out["valid"] = np.bool_(valid)
    return out


def _to_iter(ds: grain.MapDataset, cfg: RendererDataConfig) -> grain.IterDataset:
  return grain_utils.to_iter_dataset(ds, read_threads=cfg.read_threads,
                                     prefetch_buffer_size=2 * max(1, cfg.read_threads))


def train_dataset(config: Any, *, store: RendererStore, process_index: int | None = None,
                  process_count: int | None = None) -> grain.IterDataset:
  """Shuffled training frames, this process's share of each global batch."""
  cfg = as_renderer_config(config)
  index, count = grain_utils.resolve_process(process_index, process_count)
  local_batch = grain_utils.local_batch_size(cfg.batch_size, count)
  frames = _Frames(store.splits[cfg.train_split])
  if not len(frames):
    raise ValueError(f"no training frames in {cfg.root}")
  ds = grain_utils.train_slot_dataset(len(frames), seed=cfg.seed, process_index=index,
                                      process_count=count, num_epochs=cfg.num_epochs)
  ds = ds.map(_TrainExample(store, frames)).batch(local_batch, drop_remainder=True)
  return _to_iter(ds, cfg)


def eval_dataset(config: Any, *, store: RendererStore, split: str | None = None,
                 process_index: int | None = None, process_count: int | None = None
                 ) -> grain.IterDataset:
  """Every eval_stride-th held-out frame in full global batches (padding has valid=False)."""
  cfg = as_renderer_config(config)
  index, count = grain_utils.resolve_process(process_index, process_count)
  frames = _Frames(store.splits[split or cfg.eval_split], max(1, int(cfg.eval_stride)))
  if not len(frames):
    raise ValueError(f"no frames in split {split or cfg.eval_split!r} of {cfg.root}")
  global_batch = int(cfg.eval_batch_size or cfg.batch_size)
  local_batch = grain_utils.local_batch_size(global_batch, count, "global eval batch")
  local = grain_utils.padded_shard([(i, True) for i in range(len(frames))],
                                   (len(frames) - 1, False), global_batch, index, count)
  ds = grain.MapDataset.source(local).map(_EvalExample(store, frames))
  return _to_iter(ds.batch(local_batch, drop_remainder=True), cfg)
