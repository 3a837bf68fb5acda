"""TFDS builder packing MemFace speech clips (`speech/layout.py`) into ArrayRecord, and its store.

`SpeechClips` reads a speech-layout root from the manual directory (never the network) and writes
one example per clip into a single TFDS split 'clips':

  speaker, clip   text     the speaker / clip names of the layout
  split           text     the clip's split.json verbatim ('' if none; single-clip speakers)
  num_frames      int32    T, 25 fps frames
  audio           (S,)     16 kHz mono: int16 PCM (config 'int16', exact for 16 kHz int16 wavs)
                           or float32 (config 'float32', exactly `speech_layout.read_audio`);
                           (0,) when the clip has no audio.wav
  exp             (T, n_exp) float32;  exp_names (n_exp,) text or [] without names
  id              (n_id,)    float32;  pose (T, 6) float32, (0, 6) without one
  mouth_vertices  (T, M, 3)  float32 from mouth_vertices.npy, (0, 0, 3) without the file
  frame_index     (T,)       int64 (0..T-1 without frame_index.npy)
  audio_features  bytes    an .npz of the clip's precomputed features (keys among 'deepspeech',
                           'hubert', 'wav2vec', 'windows'; b'' if none), kept exactly

Train / test splits are not baked in: `TfdsSpeechStore` recomputes them from its config with
`speech_layout.split_clips` (honouring the stored split.json), so a build serves any split setting
and matches the folder store. `build()` also copies the root's face_model.npz next to the records
and writes `speech_index.json` (record -> clip), so opening a store decodes no audio.

  from data_pipelines.speech import tfds as speech_tfds
  counts = speech_tfds.build('/data/memface', '/data/tfds')
  store = speech_tfds.TfdsSpeechStore({'root': counts['builder_dir'], 'feature': 'mel', ...})
  ds = speech_pipelines.train_dataset(config, store=store)

(`speech_pipelines.open_store` opens it for `format='tfds'`.)
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import tempfile
import threading
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import tfds_utils
from data_pipelines.speech import layout as speech_layout
from data_pipelines.speech.layout import ClipEntry
from data_pipelines.speech.store import SpeechStore, as_speech_config

SPLIT = "clips"
INDEX_FILE = "speech_index.json"
SPLIT_SPECS = "split_specs"  # builder_dir/split_specs/<speaker>/<clip>/split.json
AUDIO_DTYPES = {"int16": np.int16, "float32": np.float32}

_INSTRUCTIONS = """\
Pass a MemFace speech-layout root (data_pipelines/speech/layout.py) as the manual dir:
`data_pipelines.speech.tfds.build(ROOT, OUT)`.
"""


@dataclasses.dataclass
class SpeechBuilderConfig(tfds.core.BuilderConfig):
  """How audio is stored: 'int16' PCM (half the size) or 'float32'."""
  audio_dtype: str = "int16"


def _config(audio_dtype: str) -> SpeechBuilderConfig:
  return SpeechBuilderConfig(name=audio_dtype, audio_dtype=audio_dtype,
                             description=f"16 kHz audio as {audio_dtype}")


def _array(shape: tuple[int | None, ...], dtype: Any) -> tfds.features.Tensor:
  return tfds.features.Tensor(shape=shape, dtype=dtype, encoding=tfds.features.Encoding.BYTES)


def encode_audio(wave: np.ndarray, audio_dtype: str) -> np.ndarray:
  """float32 [-1, 1) samples -> the stored dtype (int16 PCM rounds; exact for int16 wavs)."""
  if audio_dtype == "int16":
    return np.clip(np.round(np.asarray(wave, np.float64) * 32768), -32768, 32767).astype(np.int16)
  return np.asarray(wave, np.float32)


def decode_audio(stored: np.ndarray) -> np.ndarray:
  """Stored audio -> float32 samples as `speech_layout.read_audio` returns them."""
  if stored.dtype == np.int16:
    return stored.astype(np.float32) / np.float32(32768)
  return np.asarray(stored, np.float32)


class SpeechClips(tfds_utils.LocalBuilder, skip_registration=True):
  """MemFace speech layout in `manual_dir` -> one ArrayRecord example per clip."""

  name = "speech_clips"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [_config("int16"), _config("float32")]

  def _info(self) -> tfds.core.DatasetInfo:
    dtype = AUDIO_DTYPES[self.builder_config.audio_dtype]
    return self.dataset_info_from_configs(
        description="Audio-driven talking-face clips (MemFace speech layout).",
        features=tfds.features.FeaturesDict({
            "speaker": tfds.features.Text(),
            "clip": tfds.features.Text(),
            "split": tfds.features.Text(),
            "num_frames": tfds.features.Scalar(np.int32),
            "audio": _array((None,), dtype),
            "exp": _array((None, None), np.float32),
            "exp_names": tfds.features.Sequence(tfds.features.Text()),
            "id": _array((None,), np.float32),
            "pose": _array((None, 6), np.float32),
            "mouth_vertices": _array((None, None, 3), np.float32),
            "frame_index": _array((None,), np.int64),
            "audio_features": tfds.features.Tensor(shape=(), dtype=np.object_),
        }),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    clips = speech_layout.list_clips(dl_manager.manual_dir)
    return {SPLIT: self._generate_examples(clips)}

  def _generate_examples(self, clips: list[ClipEntry]):
    audio_dtype = self.builder_config.audio_dtype
    for clip in clips:
      folder = clip.path
      coeffs = speech_layout.read_coeffs(folder / speech_layout.COEFFS)
      t = len(coeffs["exp"])
      wav = folder / speech_layout.AUDIO
      wave = speech_layout.read_audio(wav) if wav.exists() else np.zeros(0, np.float32)
      vertices = folder / speech_layout.MOUTH_VERTICES
      split = folder / speech_layout.SPLIT
      features = {kind: np.load(folder / name) for kind, name in
                  speech_layout.FEATURE_FILES.items() if (folder / name).exists()}
      yield clip.key, {
          "speaker": clip.speaker,
          "clip": clip.name,
          "split": split.read_text() if split.exists() else "",
          "num_frames": t,
          "audio": encode_audio(wave, audio_dtype),
          "exp": coeffs["exp"],
          "exp_names": [str(n) for n in coeffs.get("exp_names", ())],
          "id": coeffs["id"],
          "pose": coeffs.get("pose", np.zeros((0, 6), np.float32)),
          "mouth_vertices": (np.load(vertices).astype(np.float32) if vertices.exists()
                             else np.zeros((0, 0, 3), np.float32)),
          "frame_index": speech_layout.read_frame_index(folder, t),
          "audio_features": tfds_utils.encode_npz(features),
      }


def _text(value: Any) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def _open_source(builder_dir: pathlib.Path):
  return tfds.builder_from_directory(builder_dir).as_data_source(SPLIT)


def load_index(builder_dir: str | os.PathLike) -> list[dict[str, Any]]:
  """One row per record (speaker, clip, sizes, what it holds); scanned once, cached as json."""
  builder_dir = pathlib.Path(builder_dir)

  def scan() -> list[dict[str, Any]]:
    source = _open_source(builder_dir)
    rows = []
    for record in range(len(source)):
      ex = source[record]
      rows.append({
          "record": record, "speaker": _text(ex["speaker"]), "clip": _text(ex["clip"]),
          "num_frames": int(ex["num_frames"]), "num_exp": int(ex["exp"].shape[1]),
          "num_id": int(ex["id"].shape[0]), "samples": int(ex["audio"].shape[0]),
          "has_vertices": bool(ex["mouth_vertices"].shape[0]),
          "features": sorted(tfds_utils.decode_npz(ex["audio_features"])),
          "split": _text(ex["split"])})
    return sorted(rows, key=lambda r: (r["speaker"], r["clip"]))

  return tfds_utils.cached_json(builder_dir / INDEX_FILE, scan)


def build(source: str | os.PathLike, out: str | os.PathLike, *, audio_dtype: str = "int16"
          ) -> dict[str, Any]:
  """Builds `SpeechClips` from the speech-layout root `source` into `out`.

  Returns:
    {'dataset', 'builder_dir', 'clips', 'speakers', 'frames', 'samples', 'reused'}.
  """
  if audio_dtype not in AUDIO_DTYPES:
    raise ValueError(f"audio_dtype must be one of {sorted(AUDIO_DTYPES)}, got {audio_dtype!r}")
  builder, reused = tfds_utils.prepare_builder(SpeechClips, audio_dtype, source, out)
  builder_dir = pathlib.Path(builder.data_dir)
  if not reused:  # The 3DMM of the coefficients, as speech_layout.load_face_model finds it.
    found = speech_layout.find_face_model(
        source, [path for _, _, path in speech_layout.find_clip_dirs(source)])
    if found is not None:
      shutil.copyfile(found, builder_dir / speech_layout.FACE_MODEL)
  rows = load_index(builder_dir)
  return {
      "dataset": SpeechClips.name,
      "builder_dir": str(builder_dir),
      "clips": len(rows),
      "speakers": len({r["speaker"] for r in rows}),
      "frames": sum(r["num_frames"] for r in rows),
      "samples": sum(r["samples"] for r in rows),
      "reused": reused,
  }


class TfdsSpeechStore(SpeechStore):
  """A `SpeechStore` over a `SpeechClips` build: same clips, splits, arrays and windows.

  `config.root` is the builder dir or the `out` of `build` (found by `tfds_utils.find_builder_dir`);
  `config.face_model` overrides the copied face_model.npz. Pass it as
  `speech_pipelines.train_dataset(config, store=store)` (or `eval_dataset`), or open it with
  `speech_pipelines.open_store` and `format='tfds'`.
  """

  def __init__(self, config: Any, cache_size: int = 4096):
    cfg = as_speech_config(config)
    self.builder_dir = tfds_utils.find_builder_dir(cfg.root)
    self._records: dict[str, int] = {}
    super().__init__(cfg, cache_size)

  def per_process_state(self) -> dict[str, Any]:
    """As the folder store's, and the record source (reopened lazily in each worker process)."""
    return {**super().per_process_state(), "_source": None, "_source_lock": threading.Lock()}

  def find_clips(self) -> tuple[list[ClipEntry], Any, bool]:
    """(clips, face model or None, whether every clip stores its mouth vertices) of the build."""
    rows = load_index(self.builder_dir)
    if not rows:
      raise speech_layout.SpeechLayoutError(self.builder_dir, "the build holds no clips")
    specs = self._split_dir(rows)
    clips = []
    for row in rows:
      clip = ClipEntry(speaker=row["speaker"], name=row["clip"],
                       path=specs / row["speaker"] / row["clip"], num_frames=row["num_frames"],
                       num_exp=row["num_exp"], num_id=row["num_id"])
      self._check_audio(clip, row)
      self._records[clip.key] = row["record"]
      clips.append(clip)
    sizes = {(r["num_exp"], r["num_id"]) for r in rows}
    if len(sizes) > 1:
      raise speech_layout.SpeechLayoutError(self.builder_dir, f"clips disagree on (n_exp, n_id): "
                                            f"{sorted(sizes)}")
    face_model = speech_layout.load_face_model(self.config.face_model or self.builder_dir)
    return clips, face_model, all(r["has_vertices"] for r in rows)

  def _check_audio(self, clip: ClipEntry, row: dict[str, Any]) -> None:
    feature = self.config.feature
    if feature == "mel" and not row["samples"]:
      raise speech_layout.SpeechLayoutError(f"{self.builder_dir}:{clip.key}",
                                            "no audio (the clip had no audio.wav)")
    if feature != "mel" and feature not in row["features"]:
      raise speech_layout.SpeechLayoutError(f"{self.builder_dir}:{clip.key}",
                                            f"no {feature} features (config asks for them)")

  def _split_dir(self, rows: list[dict[str, Any]]) -> pathlib.Path:
    """A folder of the clips' split.json files, for `speech_layout.split_clips` to read."""
    with_spec = [r for r in rows if r["split"]]
    for base in (self.builder_dir / SPLIT_SPECS, None):
      try:
        base = base or pathlib.Path(tempfile.mkdtemp(prefix="speech_split_specs_"))
        for row in with_spec:
          path = base / row["speaker"] / row["clip"] / speech_layout.SPLIT
          if not path.is_file() or path.read_text() != row["split"]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(row["split"])
        return base
      except OSError:  # Read-only build: a temporary folder.
        continue
    raise OSError("cannot write split specs")  # Unreachable unless /tmp is read-only.

  def _record(self, clip: ClipEntry) -> dict[str, Any]:
    with self._source_lock:
      if self._source is None:
        self._source = _open_source(self.builder_dir)
      source = self._source
    example = source[self._records[clip.key]]
    if _text(example["speaker"]) != clip.speaker or _text(example["clip"]) != clip.name:
      raise speech_layout.SpeechLayoutError(
          self.builder_dir, f"record of {clip.key} holds another clip: delete the stale "
          f"{INDEX_FILE}")
    return example

  def read_clip(self, clip: ClipEntry) -> dict[str, Any]:
    """A clip's stored arrays as the folder readers return them (audio as `read_audio`), with
    every stored feature and the clip's split.json text."""
    ex = self._record(clip)
    out = {"audio": decode_audio(ex["audio"]), "exp": ex["exp"], "id": ex["id"],
           "frame_index": ex["frame_index"], "exp_names": [_text(n) for n in ex["exp_names"]],
           "split": _text(ex["split"]),
           "features": tfds_utils.decode_npz(ex["audio_features"])}
    if len(ex["pose"]):
      out["pose"] = ex["pose"]
    if len(ex["mouth_vertices"]):
      out["mouth_vertices"] = ex["mouth_vertices"]
    return out

  def __repr__(self) -> str:
    return f"TfdsSpeechStore({self.builder_dir}, clips={len(self.clips)})"
