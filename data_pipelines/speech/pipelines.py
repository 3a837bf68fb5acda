"""Grain pipelines of frame-aligned windows for audio-to-expression training (MemFace stage 1).

An example is a window of `window` consecutive 25 fps frames of one clip (layout:
`data_pipelines/speech/layout.py`; settings and clip store: `data_pipelines/speech/store.py`):

  audio           (T_win, W, D) float32  per-frame audio feature windows; frame t's window is
                                         centred on 50 Hz feature 2t (see
                                         `data_pipelines.audio.window_indices`)
  exp             (T_win, C)    float32  the selected expression coefficients (`exp_components`)
  mouth_vertices  (T_win, M, 3) float32  ground-truth mouth vertices (when the data has them)
  id              (n_id,)       float32  identity coefficients of the clip
  speaker         ()            int32    index into `SpeechStore.speakers`
  clip, start     ()            int32    index into the split's clip list, first frame
  mask            (T_win,)      bool     False for frames past the clip end (padding)
  valid           ()            bool     evaluation only: False for batch padding

Training (`train_dataset`): an epoch has one slot per `window` frames of training audio (so long
clips are visited more), shuffled per epoch; slot positions are dealt round-robin to processes,
each batching its LOCAL share of the global batch. A window's clip comes from its slot and its start
from a generator seeded by (seed, global position), so examples do not depend on the number of
processes or workers, and the iterator state is a position (get_state / set_state).

Evaluation (`eval_dataset`): every held-out clip cut into consecutive windows (the last padded),
dealt to processes and padded with invalid examples so every process yields the same number of
full batches.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from data_pipelines import grain_utils
from data_pipelines.speech.layout import ClipEntry
from data_pipelines.speech.store import SpeechDataConfig, SpeechStore, as_speech_config
from data_pipelines.speech.tfds import TfdsSpeechStore


def open_store(config: Any) -> SpeechStore:
  """The store named by config.format: the folder layout or a speech/tfds.py build."""
  cfg = as_speech_config(config)
  if cfg.format == "tfds":
    return TfdsSpeechStore(cfg)
  if cfg.format != "folders":
    raise ValueError(f"data.format must be 'folders' or 'tfds', got {cfg.format!r}")
  return SpeechStore(cfg)


def _to_iter(ds: grain.MapDataset, cfg: SpeechDataConfig) -> grain.IterDataset:
  return grain_utils.to_iter_dataset(ds, read_threads=cfg.read_threads,
                                     prefetch_buffer_size=2 * max(1, cfg.read_threads),
                                     worker_count=cfg.worker_count)


# --------------------------------------------------------------------------------------------------
# Training.


class TrainWindowSource:
  """Random-access training windows; element `key` of slot `slot` depends on (seed, key) only."""

  def __init__(self, store: SpeechStore, split: str | None = None):
    self.store = store
    cfg = store.config
    self.clips = store.splits[split or cfg.train_split]
    if not self.clips:
      raise ValueError(f"no clips in split {split or cfg.train_split!r} of {cfg.root}")
    self.window = int(cfg.window)
    self.seed = int(cfg.seed)
    visits = [max(1, round(c.length / self.window)) for c in self.clips]
    self.slot_clip = np.repeat(np.arange(len(self.clips)), visits)

  def __len__(self) -> int:
    return len(self.slot_clip)

  def example(self, slot: int, key: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, int(key)])
    number = int(self.slot_clip[slot % len(self.slot_clip)])
    clip = self.clips[number]
    start = clip.start + int(rng.integers(max(1, clip.length - self.window + 1)))
    out = self.store.window(clip, start, self.window)
    out["clip"] = np.int32(number)
    return out


def train_dataset(config: Any, *, store: SpeechStore | None = None,
                  process_index: int | None = None, process_count: int | None = None
                  ) -> grain.IterDataset:
  """Batches of training windows (this process's share of each global batch)."""
  cfg = as_speech_config(config)
  index, count = grain_utils.resolve_process(process_index, process_count)
  local_batch = grain_utils.local_batch_size(cfg.batch_size, count)
  store = open_store(cfg) if store is None else store
  source = TrainWindowSource(store)
  ds = grain_utils.train_slot_dataset(len(source), seed=cfg.seed, process_index=index,
                                      process_count=count, num_epochs=cfg.num_epochs)
  ds = ds.map(grain_utils.ExampleFromSlot(source))
  ds = ds.batch(local_batch, drop_remainder=True)
  return _to_iter(ds, cfg)


# --------------------------------------------------------------------------------------------------
# Evaluation.


def eval_windows(clips: Sequence[ClipEntry], window: int) -> list[tuple[int, int]]:
  """(clip number, start) of consecutive windows covering every clip."""
  return [(n, s) for n, c in enumerate(clips) for s in range(c.start, c.end, window)]


class _EvalWindow(grain.transforms.Map):
  def __init__(self, store: SpeechStore, clips: Sequence[ClipEntry], window: int):
    self._store, self._clips, self._window = store, list(clips), window

  def map(self, element: tuple[int, int, bool]) -> dict[str, np.ndarray]:
    number, start, valid = element
    out = self._store.window(self._clips[number], start, self._window)
    out["clip"] = np.int32(number)
    out["valid"] = np.bool_(valid)
    out["mask"] = out["mask"] & valid
    return out


def eval_dataset(config: Any, *, store: SpeechStore | None = None, split: str | None = None,
                 process_index: int | None = None, process_count: int | None = None
                 ) -> grain.IterDataset:
  """Full batches of consecutive windows over the held-out clips (padding has valid=False)."""
  cfg = as_speech_config(config)
  index, count = grain_utils.resolve_process(process_index, process_count)
  store = open_store(cfg) if store is None else store
  clips = store.splits[split or cfg.eval_split]
  if not clips:
    raise ValueError(f"no clips in split {split or cfg.eval_split!r} of {cfg.root}")
  global_batch = int(cfg.eval_batch_size or cfg.batch_size)
  local_batch = grain_utils.local_batch_size(global_batch, count, "global eval batch")
  windows = eval_windows(clips, cfg.window)
  local = grain_utils.padded_shard([(n, s, True) for n, s in windows], (*windows[-1], False),
                                   global_batch, index, count)
  ds = grain.MapDataset.source(local).map(_EvalWindow(store, clips, cfg.window))
  return _to_iter(ds.batch(local_batch, drop_remainder=True), cfg)
