"""Grain input pipelines for talking-head training, evaluation and animation.

Every pipeline reads a `VideoStore`: raw FOMM folders (`format='folders'`) or a
dataset built by `data_pipelines.fomm.prepare` (`format='tfds'`), behind the same interface.

Training (`train_dataset`): an epoch is `num_identities * num_repeats` slots,
shuffled per epoch; slot positions are sharded across JAX processes (each
process reads a disjoint part and batches its LOCAL share of the global
batch); each pair is a pure function of (seed, global position), so results
do not depend on worker count, and the iterator state is just a position:

  it = iter(pipelines.train_dataset(cfg))
  state = it.get_state()          # save (e.g. grain.checkpoint.CheckpointSave)
  it.set_state(state)             # restore: the same next batch

Evaluation (FOMM reconstruction protocol, `reconstruction_dataset`): per test
video, frame 0 is the source and every frame is a driving frame, in chunks.
`pair_list_dataset` reads (source, driving) pairs from a CSV;
`video_dataset` yields whole videos for animation.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import grain
import numpy as np

from data_pipelines.user_errors import UserInputError
from data_pipelines import grain_utils
from data_pipelines.fomm import augmentation
from data_pipelines.fomm import layout as fomm_layout
from data_pipelines.fomm import pairs as pair_source
from data_pipelines.fomm.layout import VideoEntry
from data_pipelines.fomm.pairs import VideoStore


@dataclasses.dataclass
class DataConfig:
  """Input pipeline settings (an ml_collections ConfigDict works too).

  Attributes:
    root: FOMM root folder, or (tfds) a builder dir / `prepare --out` dir.
    format: 'folders' or 'tfds'.
    dataset: tfds only: dataset name under `root` when it holds several.
    image_size: frames are resized to this (int: square, or (height, width)).
    num_repeats: identity visits per epoch (FOMM: 75 for VoxCeleb).
    id_sampling: one slot per identity (VoxCeleb); False: one per video.
    augment: True (FOMM defaults), False, or AugmentConfig / its fields.
    batch_size: GLOBAL batch size, split evenly across processes.
    seed: seeds shuffling and every example.
    worker_count: Grain worker processes (0: in-process threads only).
    worker_buffer_size: batches buffered per worker process.
    read_threads: threads per process making batches.
    num_epochs: None repeats forever.
    eval_chunk_size: driving frames per evaluation element (None: whole video).
    eval_batch_size: pairs per batch of a CSV pair list.
    decoded_cache_mb: folders only: MB of decoded videos kept in memory per
      process (worth it when the whole dataset fits: the synthetic demo).
    pair_sampling, pair_candidates, disocclusion_fraction: how training pairs
      are drawn (pairs.PairSampling: 'uniform', or 'disocclusion' to favour
      pairs with large yaw / occluder differences).
  """
  root: str = ""
  format: str = "folders"
  dataset: str | None = None
  image_size: int | tuple[int, int] | None = 256
  num_repeats: int = 1
  id_sampling: bool = True
  augment: Any = True
  batch_size: int = 8
  seed: int = 0
  worker_count: int = 0
  worker_buffer_size: int = 2
  read_threads: int = 2
  num_epochs: int | None = None
  train_split: str = "train"
  eval_split: str = "test"
  eval_chunk_size: int | None = 64
  eval_batch_size: int = 16
  decoded_cache_mb: float = 0
  pair_sampling: str = "uniform"
  pair_candidates: int = 8
  disocclusion_fraction: float = 0.5


def as_data_config(config: Any) -> DataConfig:
  """DataConfig from a DataConfig, dict, ConfigDict or any attribute object (extras ignored)."""
  return grain_utils.config_from(DataConfig, config, tuple_fields=("image_size",))


def _augment_config(value: Any) -> augmentation.AugmentConfig:
  if isinstance(value, augmentation.AugmentConfig):
    return value
  if isinstance(value, bool):
    return augmentation.AugmentConfig() if value else augmentation.NO_AUGMENT
  if hasattr(value, "to_dict"):  # ConfigDict.
    value = value.to_dict()
  return augmentation.AugmentConfig(**dict(value))


def make_store(config: Any) -> VideoStore:
  """The video store named by `config.format` and `config.root`."""
  cfg = as_data_config(config)
  if cfg.format == "folders":
    return fomm_layout.FommVideoIndex(cfg.root, image_size=cfg.image_size,
                                      decoded_cache_mb=cfg.decoded_cache_mb)
  if cfg.format == "tfds":
    # Imported here: TensorFlow Datasets is needed only for this format (not on every GPU image).
    from data_pipelines import tfds_utils
    from data_pipelines.fomm import tfds_store
    builder_dir = tfds_utils.find_builder_dir(cfg.root, cfg.dataset)
    return tfds_store.TfdsVideoStore(builder_dir, image_size=cfg.image_size)
  raise ValueError(f"format must be 'folders' or 'tfds', got {cfg.format!r}")


def _to_iter(ds: grain.MapDataset, cfg: DataConfig, buffer: int) -> grain.IterDataset:
  return grain_utils.to_iter_dataset(ds, read_threads=cfg.read_threads, prefetch_buffer_size=buffer,
                                     worker_count=cfg.worker_count,
                                     worker_buffer_size=cfg.worker_buffer_size)


# ----------------------------------------------------------------------------
# Training pairs.
# ----------------------------------------------------------------------------


def train_dataset(config: Any, *, store: VideoStore | None = None,
                  process_index: int | None = None,
                  process_count: int | None = None) -> grain.IterDataset:
  """Batches {'source', 'driving'}: float32 (local_batch, H, W, 3) in [0, 1].

  Args:
    config: DataConfig-like; `batch_size` is global.
    store: reuse an already listed store (default: `make_store(config)`).
    process_index: this process (default `jax.process_index()`).
    process_count: number of processes (default `jax.process_count()`).
  """
  cfg = as_data_config(config)
  index, count = grain_utils.resolve_process(process_index, process_count)
  local_batch = grain_utils.local_batch_size(cfg.batch_size, count)
  store = make_store(cfg) if store is None else store
  source = pair_source.TrainPairSource(
      store, split=cfg.train_split, seed=cfg.seed, num_repeats=cfg.num_repeats,
      id_sampling=cfg.id_sampling, augment=_augment_config(cfg.augment),
      sampling=pair_source.PairSampling(cfg.pair_sampling, cfg.pair_candidates,
                                        cfg.disocclusion_fraction))
  ds = grain_utils.train_slot_dataset(len(source), seed=cfg.seed, process_index=index,
                                      process_count=count, num_epochs=cfg.num_epochs,
                                      local_batch=local_batch)
  ds = ds.map(grain_utils.ExampleFromSlot(source))
  ds = ds.batch(local_batch, drop_remainder=True)
  return _to_iter(ds, cfg, buffer=2 * max(1, cfg.read_threads))


def train_iterator(config: Any, state: dict | None = None, **kwargs
                   ) -> grain.DatasetIterator:
  """Iterator over `train_dataset`, optionally restored from `get_state()`."""
  it = iter(train_dataset(config, **kwargs))
  if state is not None:
    it.set_state(state)
  return it


# ----------------------------------------------------------------------------
# Evaluation: FOMM reconstruction protocol.
# ----------------------------------------------------------------------------


class _ReconstructionChunk(grain.transforms.Map):
  """(video number, first, stop) -> source frame 0 and driving frames."""

  def __init__(self, store: VideoStore, videos: Sequence[VideoEntry], pad_to: int | None):
    self._store = store
    self._videos = list(videos)
    self._pad_to = pad_to

  def map(self, element: tuple[int, int, int]) -> dict[str, Any]:
    number, first, stop = element
    video = self._videos[number]
    indices = np.arange(first, stop, dtype=np.int32)
    frames = pair_source.to_float(
        self._store.read_frames(video, [0, *indices.tolist()]))
    driving, valid = frames[1:], np.ones(len(indices), bool)
    if self._pad_to is not None and len(indices) < self._pad_to:
      pad = self._pad_to - len(indices)
      driving = np.concatenate([driving, np.repeat(driving[-1:], pad, 0)])
      indices = np.concatenate([indices, np.full(pad, indices[-1], np.int32)])
      valid = np.concatenate([valid, np.zeros(pad, bool)])
    return {"video": video.name, "identity": video.identity,
            "source": frames[0], "driving": driving, "frame_indices": indices,
            "valid": valid, "num_frames": np.int32(self._store.num_frames(video))}


def reconstruction_dataset(config: Any, *, store: VideoStore | None = None,
                           split: str | None = None, pad: bool = False,
                           process_index: int | None = None,
                           process_count: int | None = None) -> grain.IterDataset:
  """Per-video chunks for the FOMM reconstruction protocol.

  Each element: 'video' name, 'identity', 'source' (H, W, 3) = frame 0,
  'driving' (n, H, W, 3) = frames 'frame_indices' (n,), 'valid' (n,) bool
  (False for padding when `pad`, which makes every chunk `eval_chunk_size`
  long for a fixed jit shape) and 'num_frames'. Frames are float32 in [0, 1].
  Chunks of a video come in order; videos are dealt round-robin to processes.
  """
  cfg = as_data_config(config)
  index, count = grain_utils.resolve_process(process_index, process_count)
  store = make_store(cfg) if store is None else store
  videos = store.videos(split or cfg.eval_split)[index::count]
  chunks = []
  for number, video in enumerate(videos):
    total = store.num_frames(video)
    size = cfg.eval_chunk_size or total
    chunks += [(number, s, min(s + size, total)) for s in range(0, total, size)]
  ds = grain.MapDataset.source(chunks).map(
      _ReconstructionChunk(store, videos, cfg.eval_chunk_size if pad else None))
  return _to_iter(ds, cfg, buffer=2)


# ----------------------------------------------------------------------------
# Evaluation: pair lists from a CSV.
# ----------------------------------------------------------------------------


class PairSpec(NamedTuple):
  source_video: str
  source_frame: int
  driving_video: str
  driving_frame: int


_CSV_COLUMNS = PairSpec._fields


def read_pair_csv(path: str | os.PathLike, store: VideoStore | None = None,
                  split: str = "test") -> list[PairSpec]:
  """Rows `source_video,source_frame,driving_video,driving_frame`.

  A header row with those column names (any order) is optional. With a `store`, every video must be in
  its `split` and every frame in range. Any problem is a UserInputError naming the file and line.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserInputError(f"--pairs={path} {'is a folder' if path.is_dir() else 'does not exist'}; give "
                         "a CSV file of source_video,source_frame,driving_video,driving_frame rows")
  try:
    with open(path, newline="") as f:
      rows = [(n, r) for n, r in enumerate(csv.reader(f), start=1) if r and any(c.strip() for c in r)]
  except (UnicodeDecodeError, csv.Error) as e:
    raise UserInputError(f"--pairs={path} is not a readable CSV text file ({e})") from e
  if not rows:
    raise UserInputError(f"--pairs={path} holds no pairs; write one "
                         "source_video,source_frame,driving_video,driving_frame row per pair")
  header = [c.strip() for c in rows[0][1]]
  has_header = set(_CSV_COLUMNS) <= set(header)
  order = [header.index(c) for c in _CSV_COLUMNS] if has_header else [0, 1, 2, 3]
  pairs = []
  for line, row in rows[has_header:]:
    try:
      sv, sf, dv, df = (row[i].strip() for i in order)
      spec = PairSpec(sv, int(sf), dv, int(df))
    except (IndexError, ValueError) as e:
      raise UserInputError(f"--pairs={path} line {line}: {','.join(row)!r} is not "
                           "source_video,source_frame,driving_video,driving_frame (names, whole numbers)") from e
    if store is not None:
      for name, frame in ((spec.source_video, spec.source_frame), (spec.driving_video, spec.driving_frame)):
        try:
          count = store.num_frames(store.find(name, split))
        except KeyError as e:
          raise UserInputError(f"--pairs={path} line {line}: no video {name!r} in the {split!r} split of "
                               "the data root; check the name") from e
        if not 0 <= frame < count:
          raise UserInputError(f"--pairs={path} line {line}: frame {frame} of {name!r} is outside its "
                               f"{count} frames")
    pairs.append(spec)
  return pairs


class _PairFromSpec(grain.transforms.Map):
  """PairSpec -> frames of both videos (float32 in [0, 1]) and their names."""

  def __init__(self, store: VideoStore, split: str):
    self._store = store
    self._split = split

  def map(self, spec: PairSpec) -> dict[str, Any]:
    src = self._store.find(spec.source_video, self._split)
    drv = self._store.find(spec.driving_video, self._split)
    return {
        "source": pair_source.to_float(
            self._store.read_frames(src, [spec.source_frame]))[0],
        "driving": pair_source.to_float(
            self._store.read_frames(drv, [spec.driving_frame]))[0],
        "source_video": src.name, "driving_video": drv.name,
        "source_frame": np.int32(spec.source_frame),
        "driving_frame": np.int32(spec.driving_frame),
    }


def pair_list_dataset(config: Any, csv_path: str | os.PathLike, *,
                      store: VideoStore | None = None, split: str | None = None,
                      process_index: int | None = None,
                      process_count: int | None = None) -> grain.IterDataset:
  """Batches (`eval_batch_size`, last one may be smaller) of CSV pairs."""
  cfg = as_data_config(config)
  index, count = grain_utils.resolve_process(process_index, process_count)
  store = make_store(cfg) if store is None else store
  specs = read_pair_csv(csv_path, store, split or cfg.eval_split)[index::count]
  ds = grain.MapDataset.source(specs).map(_PairFromSpec(store, split or cfg.eval_split))
  ds = ds.batch(cfg.eval_batch_size, drop_remainder=False)
  return _to_iter(ds, cfg, buffer=2)


# ----------------------------------------------------------------------------
# Whole videos (animation).
# ----------------------------------------------------------------------------


class _WholeVideo(grain.transforms.Map):

  def __init__(self, store: VideoStore):
    self._store = store

  def map(self, video: VideoEntry) -> dict[str, Any]:
    frames = self._store.read_video(video)
    return {"video": video.name, "identity": video.identity,
            "frames": frames, "num_frames": np.int32(len(frames))}


def video_dataset(config: Any, *, store: VideoStore | None = None,
                  split: str | None = None, process_index: int | None = None,
                  process_count: int | None = None) -> grain.IterDataset:
  """Whole videos: 'video', 'identity', 'frames' uint8 (T, H, W, 3), 'num_frames'.

  Frames stay uint8 (a long float32 video is large); divide by 255 to use.
  """
  cfg = as_data_config(config)
  index, count = grain_utils.resolve_process(process_index, process_count)
  store = make_store(cfg) if store is None else store
  videos = store.videos(split or cfg.eval_split)[index::count]
  return _to_iter(grain.MapDataset.source(videos).map(_WholeVideo(store)), cfg, buffer=1)
