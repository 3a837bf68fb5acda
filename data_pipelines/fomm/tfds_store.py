"""A built TFDS talking-head dataset seen through the `VideoStore` interface.

Records hold whole videos; reading a training pair only decodes the two
frames it needs: records are deserialised without TFDS feature decoding and
the wanted PNG/JPEG frames are decoded directly. The list of videos (name,
identity, frame count per record) is scanned once and cached as
`video_index.json` in the builder directory.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import tfds_utils
from data_pipelines import video_io
from data_pipelines.fomm import layout as fomm_layout
from data_pipelines.fomm.layout import VideoEntry

INDEX_FILE = "video_index.json"

_log = logging.getLogger(__name__)


class TfdsVideoStore(fomm_layout.VideoIndexBase):
  """Random access to the videos of a dataset built by `fomm/tfds_builders.py`."""

  def __init__(self, builder_dir: str | os.PathLike,
               image_size: int | tuple[int, int] | None = None):
    self.builder_dir = pathlib.Path(builder_dir)
    super().__init__(self.builder_dir, image_size)
    self._videos = self._load_index()

  def per_process_state(self) -> dict[str, Any]:
    """The split sources too, opened lazily (also in each worker process)."""
    return {**super().per_process_state(), "_sources": {}}

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
            path=f"{self.builder_dir}:{split}", kind="tfds", record=record))
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
            feature["name"].bytes_list.value[0].decode(),
            feature["identity"].bytes_list.value[0].decode(),
            int(feature["num_frames"].int64_list.value[0]),
        ])
    return rows

  # --------------------------------------------------------------------------
  # VideoStore interface.
  # --------------------------------------------------------------------------

  def num_frames(self, video: VideoEntry) -> int:
    return self._num_frames[(video.split, video.record)]

  def _example(self, video: VideoEntry):
    example = self._source(video.split)[video.record]
    feature = example.features.feature
    name = feature["name"].bytes_list.value[0].decode()
    if name != video.name:
      raise video_io.VideoReadError(
          video.path, f"record {video.record} is {name!r}, index says "
          f"{video.name!r}: delete the stale {INDEX_FILE}")
    return feature

  def read_frames(self, video: VideoEntry, indices: Sequence[int]) -> np.ndarray:
    encoded = self._example(video)["frames"].bytes_list.value
    try:
      frames = [video_io.decode_image(encoded[int(i)]) for i in indices]
    except ValueError as e:
      raise video_io.VideoReadError(video.path, f"record {video.record}: {e}") from e
    return self.fit_image_size(np.stack(frames), self.builder_dir)

  def read_video(self, video: VideoEntry) -> np.ndarray:
    return self.read_frames(video, range(self.num_frames(video)))

  def metadata(self, video: VideoEntry) -> dict[str, np.ndarray] | None:
    """The per-video npz arrays stored with the record, or None."""
    data = self._example(video)["metadata"].bytes_list.value[0]
    return tfds_utils.decode_npz(data) or None

  def __repr__(self) -> str:
    counts = {s: len(v) for s, v in self._videos.items()}
    return f"TfdsVideoStore({self.builder_dir}, videos={counts})"
