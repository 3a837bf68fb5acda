"""TFDS builders that pack FOMM-layout talking-head datasets into ArrayRecord.

`voxceleb`, `celebv`, `hdtf` and `synthetic_talking_faces` read a prepared
FOMM folder (see `fomm/layout.py`) from the manual directory, never the network,
and write one example per video:

  name, identity: text;   num_frames: int32;
  frames: sequence of PNG (or JPEG) encoded (H, W, 3) images;
  metadata: the bytes of `<name>.npz` next to the video (b'' if none), so any
            per-video ground truth (e.g. synthetic `landmarks` (T, 68, 2)) is
            kept without fixing a schema; `tfds_utils.decode_npz` opens it.

The builders are not registered with TFDS by name (TFDS ships an unrelated
audio `voxceleb`); build them with `build()` or `python -m
data_pipelines.fomm.prepare`, and read them back with
`tfds.builder_from_directory(builder_dir)` (see `fomm/tfds_store.py`).
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import tfds_utils
from data_pipelines import video_io
from data_pipelines.fomm import layout as fomm_layout
from data_pipelines.fomm import tfds_store

_INSTRUCTIONS = """\
Prepare the videos in the first-order-model layout with the standard
video-preprocessing tools (root/train/<video>, root/test/<video>; a video is a
folder of frames, an .mp4 or a .gif) and pass that root as the manual dir:
`python -m data_pipelines.fomm.prepare --dataset NAME --source ROOT --out DIR`.
"""


@dataclasses.dataclass
class FommBuilderConfig(tfds.core.BuilderConfig):
  """Frame encoding and optional resize (None keeps each video's size)."""
  encoding: str = "png"
  image_size: int | None = None
  jpeg_quality: int = 95


def make_config(encoding: str = "png", image_size: int | None = None,
                jpeg_quality: int = 95) -> FommBuilderConfig:
  if encoding not in ("png", "jpeg"):
    raise ValueError(f"encoding must be png or jpeg, got {encoding!r}")
  name = encoding + (str(image_size) if image_size else "")
  return FommBuilderConfig(
      name=name, encoding=encoding, image_size=image_size,
      jpeg_quality=jpeg_quality,
      description=f'{encoding} frames, size {image_size or "native"}')


class _FommBuilder(tfds_utils.LocalBuilder, skip_registration=True):
  """Shared builder: FOMM folder in `manual_dir` -> ArrayRecord shards."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [make_config("png"), make_config("jpeg")]
  DESCRIPTION = "Talking-head videos in the first-order-model layout."

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.skipped: dict[str, str] = {}

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    shape = (size, size, 3) if size else (None, None, 3)
    return self.dataset_info_from_configs(
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "name": tfds.features.Text(),
            "identity": tfds.features.Text(),
            "num_frames": tfds.features.Scalar(np.int32),
            "frames": tfds.features.Sequence(tfds.features.Image(
                shape=shape, encoding_format=self.builder_config.encoding)),
            "metadata": tfds.features.Tensor(shape=(), dtype=np.object_),
        }),
        homepage="https://github.com/AliaksandrSiarohin/video-preprocessing",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    size = self.builder_config.image_size
    index = fomm_layout.FommVideoIndex(dl_manager.manual_dir, image_size=size)
    self.skipped.update(index.skipped)
    return {split: self._generate_examples(index, split) for split in index.splits}

  def _generate_examples(self, index: fomm_layout.FommVideoIndex, split: str):
    config = self.builder_config
    for video in index.videos(split):
      try:
        frames = index.read_video(video)
      except (video_io.VideoReadError, OSError, ValueError) as e:
        self.skipped[video.path] = f"read failed: {type(e).__name__}"
        continue
      meta_path = index.metadata_path(video)
      yield video.name, {
          "name": video.name,
          "identity": video.identity,
          "num_frames": len(frames),
          # Pre-encoded, so TFDS stores our exact bytes (and JPEG quality).
          "frames": [video_io.encode_image(f, config.encoding, config.jpeg_quality)
                     for f in frames],
          "metadata": meta_path.read_bytes() if meta_path else b"",
      }


class Voxceleb(_FommBuilder, skip_registration=True):
  """VoxCeleb1/2 faces (vox-png / vox-mp4 from video-preprocessing)."""
  name = "voxceleb"
  DESCRIPTION = "VoxCeleb talking heads; identity = name before the first #."


class Celebv(_FommBuilder, skip_registration=True):
  """CelebV-HQ / CelebV-Text face clips."""
  name = "celebv"
  DESCRIPTION = "CelebV talking-face clips."


class Hdtf(_FommBuilder, skip_registration=True):
  """HDTF high-resolution talking faces."""
  name = "hdtf"
  DESCRIPTION = "HDTF talking-face videos."


class SyntheticTalkingFaces(_FommBuilder, skip_registration=True):
  """Synthetic faces from data_pipelines.synthetic with per-video npz truth."""
  name = "synthetic_talking_faces"
  DESCRIPTION = "Synthetic talking faces with landmark/pose ground truth."


BUILDERS: dict[str, type[_FommBuilder]] = {
    b.name: b for b in (Voxceleb, Celebv, Hdtf, SyntheticTalkingFaces)}


def build(dataset: str, source: str | os.PathLike, out: str | os.PathLike, *,
          encoding: str = "png", image_size: int | None = None,
          jpeg_quality: int = 95) -> dict[str, Any]:
  """Builds `dataset` from the FOMM folder `source` into `out`.

  Returns:
    {'dataset', 'builder_dir', 'splits': {split: {'videos', 'frames'}},
     'reused', 'skipped': count, 'skipped_reasons': {reason: count}}.
  """
  if dataset not in BUILDERS:
    raise ValueError(f"unknown dataset {dataset!r}; one of {sorted(BUILDERS)}")
  cls = BUILDERS[dataset]
  config = make_config(encoding, image_size, jpeg_quality)
  if config in cls.BUILDER_CONFIGS:  # TFDS wants predefined configs by name.
    config = config.name
  builder, reused = tfds_utils.prepare_builder(cls, config, source, out)
  # Also writes the video index that readers use (frames counted per record).
  store = tfds_store.TfdsVideoStore(builder.data_dir)
  splits = {}
  for split in builder.info.splits:
    videos = store.videos(split)
    splits[split] = {"videos": len(videos),
                     "frames": sum(store.num_frames(v) for v in videos)}
  return {
      "dataset": dataset,
      "builder_dir": str(builder.data_dir),
      "splits": splits,
      "reused": reused,  # Already built: nothing regenerated or skipped.
      "skipped": len(builder.skipped),
      "skipped_reasons": dict(collections.Counter(builder.skipped.values())),
  }
