"""Index of a dataset in the first-order-model (FOMM) on-disk layout.

This is how VoxCeleb1/2, CelebV and HDTF come out of the standard
video-preprocessing scripts:

  root/train/<name>     root/test/<name>

where each video `<name>` is a folder of frames, an `.mp4`, a `.gif` or a
horizontal PNG strip. Frames folders are often themselves named `*.mp4`
(vox-png); the video name drops that suffix. The identity of a VoxCeleb video
is the part of its name before the first `#`. Without `train/` and `test/`
folders, the videos directly in `root` are split 80/20 at random (seed 0).

`<name>.npz` next to a video holds per-video ground truth (synthetic data) and
`<name>.wav` its audio; neither is listed as a video.

Broken videos never stop training: they are skipped when listed (or, when the
damage only shows while decoding, reported by the reader and replaced), and
summarised in a single warning.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import os
import pathlib
import threading
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image

from data_pipelines.user_errors import UserInputError
from data_pipelines import grain_utils
from data_pipelines import video_io

SPLITS = ("train", "test")
METADATA_SUFFIX = ".npz"
AUDIO_SUFFIX = ".wav"
_VIDEO_NAME_SUFFIXES = video_io.VIDEO_EXTENSIONS + video_io.GIF_EXTENSIONS

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class VideoEntry:
  """One video of a dataset.

  Attributes:
    name: video name without container suffix, e.g. `id10001#abc#001.mp4` ->
      `id10001#abc#001`.
    identity: speaker identity (VoxCeleb: the part of the name before `#`).
    split: 'train' or 'test'.
    path: frames folder or file; for TFDS-backed stores `builder_dir:split`.
    kind: 'frames', 'file' (mp4/mov/...), 'gif', 'strip' or 'tfds'.
    record: row of the TFDS split (-1 for on-disk videos).
  """
  name: str
  identity: str
  split: str
  path: str
  kind: str
  record: int = -1


def identity_of(name: str) -> str:
  """VoxCeleb convention: the identity is the name up to the first `#`."""
  return name.split("#", 1)[0]


def video_name(path: pathlib.Path) -> str:
  """Name of a video entry: file or folder name without a container suffix."""
  if path.suffix.lower() in _VIDEO_NAME_SUFFIXES + video_io.STRIP_EXTENSIONS:
    return path.name[:-len(path.suffix)]
  return path.name


def _kind_of(path: pathlib.Path) -> str | None:
  suffix = path.suffix.lower()
  if path.is_dir():
    return "frames"
  if suffix in video_io.VIDEO_EXTENSIONS:
    return "file"
  if suffix in video_io.GIF_EXTENSIONS:
    return "gif"
  if suffix in video_io.STRIP_EXTENSIONS:
    return "strip"
  return None  # .npz metadata, .wav audio, READMEs, ...


# Preference when one name exists in several containers (frames decode fastest).
_KIND_PRIORITY = {"frames": 0, "file": 1, "gif": 2, "strip": 3}


def random_split(names: Sequence[str], test_fraction: float = 0.2,
                 seed: int = 0) -> dict[str, list[str]]:
  """Deterministic train/test split of video names (sorted, then permuted)."""
  names = sorted(names)
  order = np.random.default_rng(seed).permutation(len(names))
  num_test = int(round(len(names) * test_fraction))
  if names and test_fraction > 0:
    num_test = min(max(num_test, 1), len(names) - 1) if len(names) > 1 else 0
  test = sorted(names[i] for i in order[:num_test])
  train = sorted(names[i] for i in order[num_test:])
  return {"train": train, "test": test}


class VideoIndexBase(grain_utils.PerProcessStateMixin):
  """What the video stores share (`FommVideoIndex`, fomm/tfds_store.py's `TfdsVideoStore`).

  The videos of each split (`self._videos`, filled by the subclass, sorted by name), lookup by
  name, videos found broken while reading (replaced by the pair source, counted in
  `skip_summary`) and resizing to `image_size`. Subclasses add the frame access of the
  `VideoStore` protocol (num_frames, read_frames, read_video).
  """

  def __init__(self, location: str | os.PathLike,
               image_size: int | tuple[int, int] | None = None):
    self._location = str(location)  # Names the dataset in messages.
    if isinstance(image_size, int):
      image_size = (image_size, image_size)
    self.image_size = tuple(image_size) if image_size is not None else None
    self.skipped: dict[str, str] = {}  # video (path, or path[record]) -> reason
    self._failed: set[str] = set()
    self._warned_resize = False
    self._warned_runtime = False
    self._videos: dict[str, list[VideoEntry]] = {}
    self.__dict__.update(self.per_process_state())

  def per_process_state(self) -> dict[str, Any]:
    return {"_lock": threading.Lock()}

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(s for s in SPLITS if self._videos.get(s))

  def videos(self, split: str = "train") -> list[VideoEntry]:
    """Valid videos of `split`, sorted by name."""
    return list(self._videos.get(split, ()))

  def identities(self, split: str = "train") -> list[str]:
    """Sorted identities of `split`."""
    return sorted({v.identity for v in self._videos.get(split, ())})

  def videos_by_identity(self, split: str = "train") -> dict[str, list[VideoEntry]]:
    out: dict[str, list[VideoEntry]] = collections.defaultdict(list)
    for video in self._videos.get(split, ()):
      out[video.identity].append(video)
    return dict(sorted(out.items()))

  def find(self, name: str, split: str | None = None) -> VideoEntry:
    """The video called `name` (a container suffix in `name` is ignored)."""
    stem = video_name(pathlib.Path(name))
    for s in ([split] if split else SPLITS):
      for video in self._videos.get(s, ()):
        if video.name in (name, stem):
          return video
    raise KeyError(f"no video {name!r} in {self._location}")

  def skip_summary(self) -> dict[str, int]:
    """Skipped (or failed while reading) videos per reason."""
    return dict(collections.Counter(self.skipped.values()))

  @staticmethod
  def _failure_key(video: VideoEntry) -> str:
    return video.path if video.record < 0 else f"{video.path}[{video.record}]"

  def is_failed(self, video: VideoEntry) -> bool:
    return self._failure_key(video) in self._failed

  def report_failure(self, video: VideoEntry, reason: str) -> None:
    """Records a video found broken while reading; warns once per process."""
    key = self._failure_key(video)
    with self._lock:
      self._failed.add(key)
      self.skipped[key] = reason
      first = not self._warned_runtime
      self._warned_runtime = True
    if first:
      _log.warning("video %s failed while reading (%s); it is replaced by "
                   "another one and counted in skip_summary()", key, reason)

  def fit_image_size(self, frames: np.ndarray, where: str | os.PathLike) -> np.ndarray:
    """(n, H, W, 3) frames resized to image_size (warns once); `where` names them."""
    if self.image_size is None or frames.shape[1:3] == self.image_size:
      return frames
    if not self._warned_resize:
      self._warned_resize = True
      _log.warning("%s: frames of size %s are resized to %s (warned once)",
                   where, frames.shape[1:3], self.image_size)
    return video_io.resize_frames(frames, self.image_size)


class FommVideoIndex(VideoIndexBase):
  """Videos of a FOMM-layout dataset, per split and per identity.

  Frame access (`num_frames`, `read_frames`) only decodes what it needs for
  frames folders and strips; container files are decoded up to the last
  requested frame. All state is plain data, so the index pickles cheaply into
  Grain worker processes.
  """

  def __init__(self, root: str | os.PathLike,
               image_size: int | tuple[int, int] | None = None, *,
               test_fraction: float = 0.2, split_seed: int = 0,
               num_threads: int = 8, decoded_cache_mb: float = 0):
    """Lists and validates the videos of `root`.

    Args:
      root: dataset root (with `train/` and `test/`, or a flat folder).
      image_size: frames are resized to (height, width) (int = square); None
        keeps each video's own size.
      test_fraction: test share of the random split of a flat folder.
      split_seed: seed of that split.
      num_threads: threads probing video headers while listing.
      decoded_cache_mb: keep up to this many MB of whole decoded (resized)
        container videos in memory, least recently used out first. For small
        datasets read over and over (the synthetic demo: 120 short clips) it
        removes video decoding from the training loop; 0 decodes on every read.
    """
    self.root = pathlib.Path(root)
    if not self.root.is_dir():
      what = "is a file" if self.root.exists() else "does not exist"
      raise UserInputError(f"dataset root {self.root} {what}; give a folder of videos "
                           "(--config.data.root or --data_root)")
    self._num_frames: dict[str, int] = {}
    self._cache_limit = int(decoded_cache_mb * 2**20)
    super().__init__(self.root, image_size)
    self._list(test_fraction, split_seed, num_threads)
    self._report_skipped()
    if not any(self._videos.values()):
      skipped = f" ({len(self.skipped)} unusable: {self.skip_summary()})" if self.skipped else ""
      raise UserInputError(f"dataset root {self.root} holds no usable videos{skipped}; give a folder of "
                           ".mp4/.gif files or frames folders (flat, or in train/ and test/)")

  # --------------------------------------------------------------------------
  # Listing.
  # --------------------------------------------------------------------------

  def _candidates(self, folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """Video entries of one folder, keyed by name (duplicates recorded)."""
    found: dict[str, pathlib.Path] = {}
    for path in sorted(folder.iterdir()):
      if path.name.startswith("."):
        continue
      kind = _kind_of(path)
      if kind is None:
        continue
      name = video_name(path)
      if name in found:
        keep, drop = sorted(
            [found[name], path], key=lambda p: _KIND_PRIORITY[_kind_of(p)])
        self.skipped[str(drop)] = f"duplicate of {keep.name}"
        found[name] = keep
      else:
        found[name] = path
    return found

  def _list(self, test_fraction: float, split_seed: int, num_threads: int):
    split_dirs = {s: self.root / s for s in SPLITS if (self.root / s).is_dir()}
    per_split: dict[str, dict[str, pathlib.Path]] = {}
    if split_dirs:
      for split, folder in split_dirs.items():
        per_split[split] = self._candidates(folder)
    else:
      flat = self._candidates(self.root)
      names = random_split(list(flat), test_fraction, split_seed)
      per_split = {s: {n: flat[n] for n in names[s]} for s in SPLITS}

    items = [(s, n, p) for s, c in per_split.items() for n, p in c.items()]
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
      counts = list(pool.map(lambda item: self._probe(item[2]), items))
    for split in SPLITS:
      self._videos[split] = []
    for (split, name, path), (count, reason) in zip(items, counts):
      if reason is not None:
        self.skipped[str(path)] = reason
        continue
      self._num_frames[str(path)] = count
      self._videos[split].append(VideoEntry(
          name=name, identity=identity_of(name), split=split, path=str(path),
          kind=_kind_of(path)))

  @staticmethod
  def _probe(path: pathlib.Path) -> tuple[int, str | None]:
    """(frame count, None) or (0, reason to skip). Reads headers only."""
    try:
      kind = _kind_of(path)
      if kind == "frames":
        count = len(video_io.list_frame_files(path))
        return (count, None) if count else (0, "empty frames folder")
      if path.stat().st_size == 0:
        return 0, "empty file"
      if kind == "file":
        cap = cv2.VideoCapture(str(path))
        try:
          if not cap.isOpened():
            return 0, "unreadable video file"
          count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
          if count <= 0:  # Some containers lack a count: decode one frame.
            count = 1 if cap.read()[0] else 0
        finally:
          cap.release()
        return (count, None) if count > 0 else (0, "no decodable frames")
      if kind == "gif":
        with Image.open(path) as img:
          return getattr(img, "n_frames", 1), None
      with Image.open(path) as img:  # strip
        height, width = img.height, img.width
      if height == 0 or width % height:
        return 0, f"strip width {width} not a multiple of height {height}"
      return width // height, None
    except (OSError, ValueError, cv2.error, SyntaxError) as e:
      return 0, f"unreadable: {type(e).__name__}"

  def _report_skipped(self):
    if self.skipped:
      reasons = collections.Counter(self.skipped.values())
      _log.warning("%s: skipped %d videos (%s); e.g. %s", self.root,
                   len(self.skipped), dict(reasons), next(iter(self.skipped)))

  # --------------------------------------------------------------------------
  # Frame access.
  # --------------------------------------------------------------------------

  def num_frames(self, video: VideoEntry) -> int:
    return self._num_frames[video.path]

  def read_frames(self, video: VideoEntry, indices: Sequence[int]) -> np.ndarray:
    """Frames `indices` of `video` as (n, H, W, 3) uint8, resized to image_size.

    Raises:
      VideoReadError: if the frames cannot be decoded.
    """
    indices = [int(i) for i in indices]
    count = self.num_frames(video)
    if any(i < 0 or i >= count for i in indices):
      raise IndexError(f"frame indices {indices} out of range for {video.name} "
                       f"({count} frames)")
    path = pathlib.Path(video.path)
    if video.kind == "frames":
      files = video_io.list_frame_files(path)
      if len(files) != count:
        raise video_io.VideoReadError(path, "frames folder changed on disk")
      frames = [video_io.read_image_file(files[i]) for i in indices]
    elif self._cache_limit > 0 and video.kind in ("file", "gif"):
      return self._cached_frames(video, indices)
    elif video.kind == "file":
      frames = self._read_file_frames(video, indices)
    elif video.kind == "gif":
      frames = self._read_gif_frames(path, indices)
    else:
      all_frames = video_io.read_video(path)
      frames = [all_frames[i] for i in indices]
    return self._fit_size(path, frames)

  def _cached_frames(self, video: VideoEntry, indices: list[int]) -> np.ndarray:
    """Frames from the whole decoded video, decoded once and kept (LRU, bounded in bytes)."""
    with self._lock:
      frames = self._cache.get(video.path)
      if frames is not None:
        self._cache.move_to_end(video.path)
    if frames is None:
      frames = self.read_video(video)
      count = self.num_frames(video)
      with self._lock:
        if len(frames) < count:  # The header over-counted frames: keep the true count, as uncached.
          self._num_frames[video.path] = len(frames)
        if video.path not in self._cache and frames.nbytes <= self._cache_limit:
          self._cache[video.path] = frames
          self._cache_bytes += frames.nbytes
          while self._cache_bytes > self._cache_limit:
            _, dropped = self._cache.popitem(last=False)
            self._cache_bytes -= dropped.nbytes
    return frames[[min(i, len(frames) - 1) for i in indices]]

  def read_video(self, video: VideoEntry) -> np.ndarray:
    """All frames of `video` as (T, H, W, 3) uint8, resized to image_size."""
    frames = video_io.read_video(video.path)
    return self._fit_size(pathlib.Path(video.path), list(frames))

  def _read_file_frames(self, video: VideoEntry, indices: list[int]) -> list[np.ndarray]:
    """Decodes a container up to the last wanted frame, grabbing the rest."""
    wanted = set(indices)
    last = max(indices)
    got: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(video.path)
    try:
      if not cap.isOpened():
        raise video_io.VideoReadError(video.path, "unreadable video file")
      i = 0
      while i <= last:
        if i in wanted:
          ok, frame = cap.read()
          if ok:
            got[i] = video_io.to_rgb_uint8(frame[..., ::-1])
        else:
          ok = cap.grab()
        if not ok:
          break
        i += 1
    finally:
      cap.release()
    if not got:
      raise video_io.VideoReadError(video.path, "no decodable frames")
    if i <= last:
      # The header over-counted frames: remember the true count and fall back
      # to the last decodable frame, so sampling stays in range from now on.
      with self._lock:
        self._num_frames[video.path] = i
      fallback = got[max(got)]
      return [got.get(j, fallback) for j in indices]
    return [got[j] for j in indices]

  @staticmethod
  def _read_gif_frames(path: pathlib.Path, indices: list[int]) -> list[np.ndarray]:
    out = {}
    with Image.open(path) as img:
      for i in sorted(set(indices)):
        img.seek(i)
        out[i] = np.asarray(img.convert("RGB"))
    return [out[i] for i in indices]

  def _fit_size(self, path: pathlib.Path, frames: list[np.ndarray]) -> np.ndarray:
    if not frames:
      raise video_io.VideoReadError(path, "no frames")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
      raise video_io.VideoReadError(path, f"frames of different sizes {sorted(shapes)}")
    return self.fit_image_size(np.stack(frames), path)

  # --------------------------------------------------------------------------
  # Side files.
  # --------------------------------------------------------------------------

  def _side_file(self, video: VideoEntry, suffix: str) -> pathlib.Path:
    return pathlib.Path(video.path).parent / f"{video.name}{suffix}"

  def metadata(self, video: VideoEntry) -> dict[str, np.ndarray] | None:
    """Arrays of `<name>.npz` next to the video, or None when there is none."""
    path = self._side_file(video, METADATA_SUFFIX)
    if not path.is_file():
      return None
    with np.load(path, allow_pickle=False) as npz:
      return {k: npz[k] for k in npz.files}

  def metadata_path(self, video: VideoEntry) -> pathlib.Path | None:
    path = self._side_file(video, METADATA_SUFFIX)
    return path if path.is_file() else None

  def audio_path(self, video: VideoEntry) -> pathlib.Path | None:
    """`<name>.wav` next to the video, else the video file if it has audio."""
    path = self._side_file(video, AUDIO_SUFFIX)
    if path.is_file():
      return path
    if video.kind == "file" and video_io.video_info(video.path)["has_audio"]:
      return pathlib.Path(video.path)
    return None

  def per_process_state(self) -> dict[str, Any]:
    """An empty decoded cache too: each process fills its own (shipping decoded frames to Grain
    workers would cost more)."""
    return {**super().per_process_state(), "_cache": collections.OrderedDict(), "_cache_bytes": 0}

  def cache_usage(self) -> tuple[list[str], int]:
    """Paths of the decoded videos in memory (least recently used first) and their bytes."""
    with self._lock:
      return list(self._cache), self._cache_bytes

  def __repr__(self) -> str:
    counts = {s: len(v) for s, v in self._videos.items()}
    return f"FommVideoIndex({self.root}, videos={counts}, skipped={len(self.skipped)})"
