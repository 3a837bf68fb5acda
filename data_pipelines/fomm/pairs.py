"""Random-access source of (source, driving) training pairs, FOMM style.

One epoch visits every identity `num_repeats` times (identity sampling of the
VoxCeleb trainers: a slot names an identity, the video of that identity and
the two frames are drawn at random). Element `index` is a pure function of
(seed, index): the random generator is derived from both, so the example is
the same whatever the shuffling, sharding or number of Grain workers.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import threading
from typing import Protocol

import numpy as np

from data_pipelines import grain_utils, video_io
from data_pipelines.user_errors import UserInputError
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


@dataclasses.dataclass(frozen=True)
class PairSampling:
  """How a video's two frames are drawn.

  mode: 'uniform' (FOMM: two frames at random) or 'disocclusion': with probability `fraction`, the
    pair of `candidates` random pairs whose frames differ most in head yaw and in how much of the
    head occluders hide (|yaw_s - yaw_d| in radians + |occluded_s - occluded_d| as a fraction): pairs
    where the driving frame shows what the source does not. Needs the per-frame `pose` and
    `occlusion` of the video's metadata (`<name>.npz`, the synthetic set has them); videos without
    them are drawn uniformly.
  """
  mode: str = "uniform"
  candidates: int = 8
  fraction: float = 0.5

  def __post_init__(self):
    if self.mode not in ("uniform", "disocclusion"):
      raise UserInputError(f"data.pair_sampling={self.mode!r}: choose 'uniform' or 'disocclusion'")
    if self.candidates < 1 or not 0.0 <= self.fraction <= 1.0:
      raise UserInputError(f"data.pair_candidates={self.candidates} must be >= 1 and "
                           f"data.disocclusion_fraction={self.fraction} in [0, 1]")


def pair_scores(pose: np.ndarray, occlusion: np.ndarray, pairs: np.ndarray) -> np.ndarray:
  """(P,) disocclusion scores of (P, 2) frame pairs: yaw difference + occluded-fraction difference."""
  yaw = np.asarray(pose, np.float64)[:, 0]
  occ = np.asarray(occlusion, np.float64)
  return np.abs(yaw[pairs[:, 0]] - yaw[pairs[:, 1]]) + np.abs(occ[pairs[:, 0]] - occ[pairs[:, 1]])


def to_float(frames: np.ndarray) -> np.ndarray:
  """uint8 frames -> float32 in [0, 1]."""
  return np.multiply(frames, np.float32(1.0 / 255.0), dtype=np.float32)


class TrainPairSource(grain_utils.PerProcessStateMixin):
  """`grain.RandomAccessDataSource` of augmented training pairs.

  `len()` is one epoch: `num_identities * num_repeats` slots (or videos, with
  `id_sampling=False`). `source[i]` for any i >= 0 (also past one epoch) gives
  `{'source', 'driving'}` float32 (H, W, 3) in [0, 1], the source frame
  earlier in time unless the time flip swapped them.
  """

  def __init__(self, store: VideoStore, *, split: str = "train", seed: int = 0,
               num_repeats: int = 1, id_sampling: bool = True,
               augment: augmentation.AugmentConfig | bool = True,
               max_retries: int = 20, sampling: PairSampling = PairSampling()):
    self._store = store
    self._sampling = sampling
    self.__dict__.update(self.per_process_state())
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

  def per_process_state(self) -> dict:
    # Video path -> (pose, occlusion) per frame, or None: read once per process.
    return {"_motion": {}, "_motion_lock": threading.Lock()}

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
      if self._sampling.mode == "disocclusion" and rng.random() < self._sampling.fraction:
        indices = self._disoccluding_pair(video, num, indices, rng)
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

  def _motion_of(self, video: VideoEntry) -> tuple[np.ndarray, np.ndarray] | None:
    """(pose, occlusion) per frame from the video's metadata, cached; None without them."""
    with self._motion_lock:
      if video.path in self._motion:
        return self._motion[video.path]
    motion = None
    path = getattr(self._store, "metadata_path", lambda _: None)(video)
    if path is not None:
      try:
        with np.load(path, allow_pickle=False) as npz:  # Only these two arrays are read.
          if "pose" in npz.files and "occlusion" in npz.files:
            motion = (np.asarray(npz["pose"]), np.asarray(npz["occlusion"]))
      except (OSError, ValueError):
        motion = None
    with self._motion_lock:
      self._motion[video.path] = motion
    return motion

  def _disoccluding_pair(self, video: VideoEntry, num: int, drawn: np.ndarray,
                         rng: np.random.Generator) -> np.ndarray:
    motion = self._motion_of(video)
    if motion is None or len(motion[0]) < num or len(motion[1]) < num:
      return drawn
    pairs = np.concatenate([drawn[None], rng.integers(num, size=(self._sampling.candidates - 1, 2))])
    return np.sort(pairs[int(np.argmax(pair_scores(*motion, pairs)))])

  def example(self, slot: int, key: int) -> dict[str, np.ndarray]:
    """The pair for identity `slot`, drawn with the generator of `key`."""
    rng = self.rng(key)
    _, pair = self.sample_frames(slot, rng)
    frames = augmentation.augment(to_float(pair), self._augment, rng)
    return {"source": frames[0], "driving": frames[1]}

  def __repr__(self) -> str:
    return (f"TrainPairSource(groups={len(self._groups)}, "
            f"num_repeats={self._num_repeats}, seed={self._seed})")
