"""A built TFDS talking-head dataset seen through the `VideoStore` interface.

Records hold whole videos; reading a training pair only decodes the two
frames it needs: records are deserialised without TFDS feature decoding and
the wanted PNG/JPEG frames are decoded directly. The list of videos (name,
identity, frame count per record) is scanned once and cached as
`video_index.json` in the builder directory.
"""

from __future__ import annotations

import collections
import logging
import os
import pathlib
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import grain_utils
from data_pipelines import tfds_utils
from data_pipelines import video_io
from data_pipelines.fomm import layout as fomm_layout
from data_pipelines.fomm.layout import VideoEntry

INDEX_FILE = 'video_index.json'

_log = logging.getLogger(__name__)


class TfdsVideoStore(grain_utils.PerProcessStateMixin):
  """Random access to the videos of a dataset built by `tfds_builders`."""

  def __init__(self, builder_dir: str | os.PathLike,
               image_size: int | tuple[int, int] | None = None):
    self.builder_dir = pathlib.Path(builder_dir)
    if isinstance(image_size, int):
      image_size = (image_size, image_size)
    self.image_size = tuple(image_size) if image_size is not None else None
    self.skipped: dict[str, str] = {}
    self._failed: set[tuple[str, int]] = set()
    self._warned_resize = False
    self._warned_runtime = False
    self.__dict__.update(self.per_process_state())
    self._videos = self._load_index()

  def per_process_state(self) -> dict[str, Any]:
    """A lock and the split sources, opened lazily (also in each worker process)."""
    return {'_lock': threading.Lock(), '_sources': {}}

  # --------------------------------------------------------------------------
  # Index.
  # --------------------------------------------------------------------------

  def _builder(self):
    return tfds.builder_from_directory(self.builder_dir)

  def _source(self, split: str):
    """Per-split ArrayRecord source, opened lazily (also in each worker)."""
    with self._lock:
      if split not in self._sources:
        self._sources[split] = self._builder().as_data_source(
            split, deserialize_method=tfds.decode.DeserializeMethod.DESERIALIZE_NO_DECODE)
      return self._sources[split]

  def _load_index(self) -> dict[str, list[VideoEntry]]:
    rows = tfds_utils.cached_json(self.builder_dir / INDEX_FILE, self._scan)
    videos: dict[str, list[VideoEntry]] = {}
    self._num_frames: dict[tuple[str, int], int] = {}
    for split, entries in rows.items():
      videos[split] = []
      for record, name, identity, count in entries:
        self._num_frames[(split, record)] = count
        videos[split].append(VideoEntry(
            name=name, identity=identity, split=split,
            path=f'{self.builder_dir}:{split}', kind='tfds', record=record))
      videos[split].sort(key=lambda v: v.name)
    return videos

  def _scan(self) -> dict[str, list]:
    """[record, name, identity, num_frames] for each record of each split."""
    rows = {}
    for split in self._builder().info.splits:
      source = self._source(split)
      rows[split] = []
      for record in range(len(source)):
        feature = source[record].features.feature
        rows[split].append([
            record,
            feature['name'].bytes_list.value[0].decode(),
            feature['identity'].bytes_list.value[0].decode(),
            int(feature['num_frames'].int64_list.value[0]),
        ])
    return rows

  # --------------------------------------------------------------------------
  # VideoStore interface.
  # --------------------------------------------------------------------------

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(s for s in fomm_layout.SPLITS if self._videos.get(s))

  def videos(self, split: str = 'train') -> list[VideoEntry]:
    return list(self._videos.get(split, ()))

  def identities(self, split: str = 'train') -> list[str]:
    return sorted({v.identity for v in self._videos.get(split, ())})

  def find(self, name: str, split: str | None = None) -> VideoEntry:
    stem = fomm_layout.video_name(pathlib.Path(name))
    for s in ([split] if split else fomm_layout.SPLITS):
      for video in self._videos.get(s, ()):
        if video.name in (name, stem):
          return video
    raise KeyError(f'no video {name!r} in {self.builder_dir}')

  def num_frames(self, video: VideoEntry) -> int:
    return self._num_frames[(video.split, video.record)]

  def is_failed(self, video: VideoEntry) -> bool:
    return (video.split, video.record) in self._failed

  def report_failure(self, video: VideoEntry, reason: str) -> None:
    with self._lock:
      self._failed.add((video.split, video.record))
      self.skipped[f'{video.path}[{video.record}]'] = reason
      first = not self._warned_runtime
      self._warned_runtime = True
    if first:
      _log.warning('record %s of %s failed (%s); replaced and counted in '
                   'skip_summary()', video.record, video.path, reason)

  def skip_summary(self) -> dict[str, int]:
    return dict(collections.Counter(self.skipped.values()))

  def _example(self, video: VideoEntry):
    example = self._source(video.split)[video.record]
    feature = example.features.feature
    name = feature['name'].bytes_list.value[0].decode()
    if name != video.name:
      raise video_io.VideoReadError(
          video.path, f'record {video.record} is {name!r}, index says '
          f'{video.name!r}: delete the stale {INDEX_FILE}')
    return feature

  def read_frames(self, video: VideoEntry, indices: Sequence[int]) -> np.ndarray:
    encoded = self._example(video)['frames'].bytes_list.value
    try:
      frames = [video_io.decode_image(encoded[int(i)]) for i in indices]
    except ValueError as e:
      raise video_io.VideoReadError(video.path, f'record {video.record}: {e}') from e
    return self._fit_size(np.stack(frames))

  def read_video(self, video: VideoEntry) -> np.ndarray:
    return self.read_frames(video, range(self.num_frames(video)))

  def metadata(self, video: VideoEntry) -> dict[str, np.ndarray] | None:
    """The per-video npz arrays stored with the record, or None."""
    data = self._example(video)['metadata'].bytes_list.value[0]
    return tfds_utils.decode_npz(data) or None

  def _fit_size(self, frames: np.ndarray) -> np.ndarray:
    if self.image_size is None or frames.shape[1:3] == self.image_size:
      return frames
    if not self._warned_resize:
      self._warned_resize = True
      _log.warning('%s: frames of size %s are resized to %s (warned once)',
                   self.builder_dir, frames.shape[1:3], self.image_size)
    return video_io.resize_frames(frames, self.image_size)

  def __repr__(self) -> str:
    counts = {s: len(v) for s, v in self._videos.items()}
    return f'TfdsVideoStore({self.builder_dir}, videos={counts})'
