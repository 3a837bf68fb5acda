"""Random-access source of (source, driving) training pairs, FOMM style.

One epoch visits every identity `num_repeats` times (identity sampling of the
VoxCeleb trainers: a slot names an identity, the video of that identity and
the two frames are drawn at random). Element `index` is a pure function of
(seed, index): the random generator is derived from both, so the example is
the same whatever the shuffling, sharding or number of Grain workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from data_pipelines.user_errors import UserInputError
from data_pipelines import video_io
from data_pipelines.fomm import augmentation
from data_pipelines.fomm.layout import VideoEntry


class VideoStore(Protocol):
  """What pair sources and pipelines need from a dataset (folders or TFDS)."""

  image_size: tuple[int, int] | None

  def videos(self, split: str = "train") -> list[VideoEntry]: ...

  def num_frames(self, video: VideoEntry) -> int: ...

  def read_frames(self, video: VideoEntry, indices: Sequence[int]) -> np.ndarray: ...

  def read_video(self, video: VideoEntry) -> np.ndarray: ...

  def is_failed(self, video: VideoEntry) -> bool: ...

  def report_failure(self, video: VideoEntry, reason: str) -> None: ...

  def skip_summary(self) -> dict[str, int]: ...


def to_float(frames: np.ndarray) -> np.ndarray:
  """uint8 frames -> float32 in [0, 1]."""
  return np.multiply(frames, np.float32(1.0 / 255.0), dtype=np.float32)


class TrainPairSource:
  """`grain.RandomAccessDataSource` of augmented training pairs.

  `len()` is one epoch: `num_identities * num_repeats` slots (or videos, with
  `id_sampling=False`). `source[i]` for any i >= 0 (also past one epoch) gives
  `{'source', 'driving'}` float32 (H, W, 3) in [0, 1], the source frame
  earlier in time unless the time flip swapped them.
  """

  def __init__(self, store: VideoStore, *, split: str = "train", seed: int = 0,
               num_repeats: int = 1, id_sampling: bool = True,
               augment: augmentation.AugmentConfig | bool = True,
               max_retries: int = 20):
    self._store = store
    self._seed = int(seed)
    self._max_retries = max_retries
    if augment is True:
      augment = augmentation.AugmentConfig()
    elif augment is False:
      augment = augmentation.NO_AUGMENT
    self._augment = augment
    videos = store.videos(split)
    if not videos:
      raise UserInputError(f"no usable {split!r} videos in {store!r}; put videos in its {split}/ folder "
                           "(or use a flat folder, split at random)")
    groups: dict[str, list[VideoEntry]] = {}
    for video in videos:
      key = video.identity if id_sampling else f"{video.identity}/{video.name}"
      groups.setdefault(key, []).append(video)
    self._groups = [groups[k] for k in sorted(groups)]
    self._group_names = sorted(groups)
    self._num_repeats = int(num_repeats)

  @property
  def store(self) -> VideoStore:
    return self._store

  @property
  def num_groups(self) -> int:
    """Identities (or videos without identity sampling) per repeat."""
    return len(self._groups)

  def group_name(self, slot: int) -> str:
    return self._group_names[slot % len(self._groups)]

  def __len__(self) -> int:
    return len(self._groups) * self._num_repeats

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return self.example(int(index) % len(self), int(index))

  def rng(self, key: int) -> np.random.Generator:
    """The per-example generator: depends on (seed, key) only."""
    return np.random.default_rng([self._seed, int(key)])

  def sample_frames(self, slot: int, rng: np.random.Generator
                    ) -> tuple[VideoEntry, np.ndarray]:
    """Picks a video of slot's identity and two sorted frames (uint8 pair).

    A video that fails to decode is reported to the store and replaced by a
    random other one (deterministically: the same corrupt file always fails).
    """
    group = self._groups[slot % len(self._groups)]
    for _ in range(self._max_retries):
      video = group[rng.integers(len(group))]
      num = self._store.num_frames(video)
      indices = np.sort(rng.choice(num, size=2, replace=True))
      if self._store.is_failed(video):
        group = self._groups[rng.integers(len(self._groups))]
        continue
      try:
        return video, self._store.read_frames(video, indices)
      except (video_io.VideoReadError, OSError, ValueError, IndexError) as e:
        self._store.report_failure(video, f"read failed: {type(e).__name__}")
        group = self._groups[rng.integers(len(self._groups))]
    raise RuntimeError(f"{self._max_retries} videos in a row failed to decode; "
                       f"skipped so far: {self._store.skip_summary()}")

  def example(self, slot: int, key: int) -> dict[str, np.ndarray]:
    """The pair for identity `slot`, drawn with the generator of `key`."""
    rng = self.rng(key)
    _, pair = self.sample_frames(slot, rng)
    frames = augmentation.augment(to_float(pair), self._augment, rng)
    return {"source": frames[0], "driving": frames[1]}

  def __repr__(self) -> str:
    return (f"TrainPairSource(groups={len(self._groups)}, "
            f"num_repeats={self._num_repeats}, seed={self._seed})")
