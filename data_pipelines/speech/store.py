"""The speech data settings and the store of clips the speech pipelines read (MemFace stage 1).

`SpeechStore` reads the per-speaker folder layout (`data_pipelines/speech/layout.py`); its
subclass `TfdsSpeechStore` (`data_pipelines/speech/tfds.py`) reads the same clips from a TFDS build.
Both give the clips, their train / test split, the selected expression coefficients and cached
per-clip arrays; the Grain pipelines are in `data_pipelines/speech/pipelines.py`.

Audio features ('feature'): 'mel' (default: 80-band log-mel at 50 Hz from audio.wav, weight-free),
precomputed 'deepspeech' / 'hubert' / 'wav2vec' files on the audio timeline, or 'windows' (a
prepare_speaker folder's audio_features.npy, one window per kept frame). With a frame_index.npy
(frames dropped by prepare_speaker), kept frame t takes the audio of source frame frame_index[t].
Features are standardised with per-dimension statistics of (up to 64) training clips, so the split
alone fixes them.
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from data_pipelines import audio as audio_lib
from data_pipelines import grain_utils
from data_pipelines.speech import layout as speech_layout
from data_pipelines.speech.layout import ClipEntry

FEATURE_KINDS = ("mel", "deepspeech", "hubert", "wav2vec", "windows")


@dataclasses.dataclass
class SpeechDataConfig:
  """Settings of the speech pipelines (an ml_collections ConfigDict with these fields works too).

  Attributes:
    root: dataset root (speech layout), or with format='tfds' the output of speech/tfds.py's build.
    format: 'folders' (the per-speaker layout) or 'tfds' (ArrayRecord shards of speech/tfds.py).
    feature: 'mel', 'deepspeech', 'hubert', 'wav2vec' or 'windows'.
    feature_window: W, 50 Hz feature frames per video frame (ignored for 'deepspeech' / 'windows').
    window: T_win, frames per example.
    batch_size: GLOBAL batch size, split evenly across processes.
    eval_batch_size: global evaluation batch size (default batch_size).
    seed: seeds shuffling and window positions.
    split_seed: seeds which clips / speakers are held out.
    test_fraction: clips held out per speaker (time fraction for single-clip speakers).
    test_speakers: held-out speakers: a count or names.
    exp_components: the coefficients to predict: None (all), names (looked up in the clips'
      exp_names or the face model's) or indices.
    face_model: path of a 3DMM .npz (default: root/face_model.npz when present).
    normalize_features: standardise features with training statistics.
    read_threads: threads per process making examples.
    worker_count: Grain worker processes (0: threads only).
    num_epochs: None repeats forever.
    train_split / eval_split: split names of `speech_layout.split_clips`.
  """
  root: str = ""
  format: str = "folders"
  feature: str = "mel"
  feature_window: int = 16
  window: int = 32
  batch_size: int = 16
  eval_batch_size: int | None = None
  seed: int = 0
  split_seed: int = 0
  test_fraction: float = 0.1
  test_speakers: Any = 0
  exp_components: Any = None
  face_model: str | None = None
  normalize_features: bool = True
  read_threads: int = 2
  worker_count: int = 0
  num_epochs: int | None = None
  train_split: str = "train"
  eval_split: str = "test"


def as_speech_config(config: Any) -> SpeechDataConfig:
  """SpeechDataConfig from itself, a dict, a ConfigDict or any attribute object (extras ignored)."""
  return grain_utils.config_from(SpeechDataConfig, config,
                                 tuple_fields=("exp_components", "test_speakers"))


def resolve_components(components: Any, exp_names: Sequence[str] | None, num_exp: int
                       ) -> np.ndarray:
  """Indices of the selected expression coefficients: all (None), by name, or as given."""
  if components is None:
    return np.arange(num_exp)
  components = list(components)
  if all(isinstance(c, str) for c in components):
    if exp_names is None:
      raise ValueError("exp_components are names, but neither coeffs.npz nor a face model has "
                       "exp_names; give indices instead")
    missing = [c for c in components if c not in exp_names]
    if missing:
      raise ValueError(f"exp_components {missing} not among the expression names {list(exp_names)}")
    return np.array([list(exp_names).index(c) for c in components])
  index = np.asarray(components, int)
  if index.size and (index.min() < 0 or index.max() >= num_exp):
    raise ValueError(f"exp_components {index.tolist()} out of range for {num_exp} coefficients")
  return index


class SpeechStore(grain_utils.PerProcessStateMixin):
  """Clips of one dataset, its split, the selected coefficients and cached per-clip arrays.

  This class reads the folder layout; a store over other storage overrides `find_clips` and
  `read_clip` (see `TfdsSpeechStore`).
  """

  def __init__(self, config: Any, cache_size: int = 4096):
    self.config = cfg = as_speech_config(config)
    if cfg.feature not in FEATURE_KINDS:
      raise ValueError(f"feature must be one of {FEATURE_KINDS}, got {cfg.feature!r}")
    self._cache_size = cache_size
    self.__dict__.update(self.per_process_state())
    self.clips, self.face_model, all_vertices = self.find_clips()
    self.splits = speech_layout.split_clips(self.clips, cfg.test_fraction, cfg.test_speakers,
                                            cfg.split_seed)
    self.speakers = speech_layout.speaker_names(self.clips)
    self._speaker_index = {s: i for i, s in enumerate(self.speakers)}
    first = self.read_clip(self.clips[0])
    names = first["exp_names"] or None
    if names is None and self.face_model is not None:
      names = self.face_model.exp_names
    self.exp_names = None if names is None else tuple(str(n) for n in names)
    self.num_exp, self.num_id = first["exp"].shape[1], len(first["id"])
    self.exp_index = resolve_components(cfg.exp_components, self.exp_names, self.num_exp)
    if self.face_model is not None and self.face_model.n_exp != self.num_exp:
      raise speech_layout.SpeechLayoutError(
          cfg.root, f"face model has {self.face_model.n_exp} expression components, the clips "
          f"{self.num_exp}")
    self.has_vertices = all_vertices or self.face_model is not None
    self._stats = None
    if cfg.normalize_features:
      self._stats = self._feature_stats(self.splits[cfg.train_split] or self.clips)

  def per_process_state(self) -> dict[str, Any]:
    """A lock and an empty clip cache (each Grain worker fills its own)."""
    return {"_lock": threading.Lock(), "_cache": {}}

  # -- storage ----------------------------------------------------------------------------------
  def find_clips(self) -> tuple[list[ClipEntry], Any, bool]:
    """(clips, face model or None, whether every clip stores its mouth vertices)."""
    cfg = self.config
    require = "wav" if cfg.feature == "mel" else cfg.feature
    clips = speech_layout.list_clips(cfg.root, require_audio=require)
    face_model = speech_layout.load_face_model(cfg.face_model or cfg.root, clips)
    all_vertices = all((c.path / speech_layout.MOUTH_VERTICES).exists() for c in clips)
    return clips, face_model, all_vertices

  def read_clip(self, clip: ClipEntry) -> dict[str, Any]:
    """A clip's stored arrays: exp (T, n_exp), id, exp_names (list, [] without), frame_index,
    pose and mouth_vertices when stored, and the audio ('audio' as `speech_layout.read_audio`
    returns it, for feature 'mel') or the precomputed features ({kind: array})."""
    folder, feature = clip.path, self.config.feature
    coeffs = speech_layout.read_coeffs(folder / speech_layout.COEFFS)
    out = {"exp": coeffs["exp"], "id": coeffs["id"],
           "exp_names": [str(n) for n in coeffs.get("exp_names", ())],
           "frame_index": speech_layout.read_frame_index(folder, clip.num_frames)}
    if "pose" in coeffs:
      out["pose"] = coeffs["pose"]
    if (folder / speech_layout.MOUTH_VERTICES).exists():
      out["mouth_vertices"] = np.load(folder / speech_layout.MOUTH_VERTICES)
    if feature == "mel":
      out["audio"] = speech_layout.read_audio(folder / speech_layout.AUDIO)
    else:
      out["features"] = {feature: np.load(folder / speech_layout.FEATURE_FILES[feature])}
    return out

  # -- per-clip arrays --------------------------------------------------------------------------
  @property
  def selected_names(self) -> tuple[str, ...] | None:
    return None if self.exp_names is None else tuple(self.exp_names[i] for i in self.exp_index)

  def speaker_id(self, clip: ClipEntry) -> int:
    return self._speaker_index[clip.speaker]

  def _features_of(self, data: dict[str, Any]) -> np.ndarray:
    """(2T', D) 50 Hz features, or (T', W, D) DeepSpeech windows, of `read_clip`'s arrays."""
    feature = self.config.feature
    if feature == "mel":
      return audio_lib.log_mel_features(data["audio"])
    array = data["features"][feature].astype(np.float32)
    if array.ndim == 3 and array.shape[0] == 1 and feature not in ("deepspeech", "windows"):
      array = array[0]
    return array

  def feature_standardisation(self) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) the features are standardised with (zeros / ones when normalisation is off);
    inference needs them without the training data (talkingmem/memface/speak.py caches them)."""
    if self._stats is not None:
      return self._stats
    dim = self.feature_dim()[1]
    return np.zeros(dim, np.float32), np.ones(dim, np.float32)

  def _feature_stats(self, clips: Sequence[ClipEntry]) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted({c.key: c for c in clips}.items())
    picks = [c for _, c in keys][::max(1, len(keys) // 64)][:64]
    feats = [self._features_of(self.read_clip(c)) for c in picks]
    flat = np.concatenate([f.reshape(-1, f.shape[-1]) for f in feats])
    return flat.mean(0).astype(np.float32), np.maximum(flat.std(0), 1e-3).astype(np.float32)

  def arrays(self, clip: ClipEntry) -> dict[str, np.ndarray]:
    """Whole-clip arrays (cached): features, exp (T, C), mouth_vertices (T, M, 3), id."""
    with self._lock:
      cached = self._cache.get(clip.key)
    if cached is not None:
      return cached
    data = self.read_clip(clip)
    feats = self._features_of(data)
    if self._stats is not None:
      feats = (feats - self._stats[0]) / self._stats[1]
    out = {"features": feats.astype(np.float32), "exp_all": data["exp"],
           "exp": data["exp"][:, self.exp_index], "id": data["id"],
           "frame_index": data["frame_index"]}
    if self.has_vertices:
      if "mouth_vertices" in data:
        out["mouth_vertices"] = data["mouth_vertices"].astype(np.float32)
      else:  # From the coefficients.
        model = self.face_model
        out["mouth_vertices"] = model.vertices(data["id"], data["exp"])[
            :, model.mouth_vertex_ids].astype(np.float32)
    with self._lock:
      if len(self._cache) >= self._cache_size:
        self._cache.pop(next(iter(self._cache)))
      self._cache[clip.key] = out
    return out

  def window(self, clip: ClipEntry, start: int, length: int) -> dict[str, np.ndarray]:
    """Frames [start, start + length) of a clip; frames past its end repeat the last, masked."""
    arrays = self.arrays(clip)
    frames = np.arange(start, start + length)
    mask = frames < clip.end
    frames = np.minimum(frames, clip.end - 1)
    feats = arrays["features"]
    if self.config.feature == "windows":  # Already one window per kept frame.
      audio = feats[frames]
    elif self.config.feature == "deepspeech":  # One window per source frame.
      audio = feats[np.minimum(arrays["frame_index"][frames], len(feats) - 1)]
    else:  # 50 Hz frames: window centred on feature 2 * source frame.
      source = arrays["frame_index"][frames]
      idx, _ = audio_lib.window_indices(int(source.max()) + 1, len(feats),
                                        self.config.feature_window)
      audio = feats[idx[source]]
    out = {"audio": audio, "exp": arrays["exp"][frames], "id": arrays["id"],
           "speaker": np.int32(self.speaker_id(clip)), "start": np.int32(start), "mask": mask}
    if "mouth_vertices" in arrays:
      out["mouth_vertices"] = arrays["mouth_vertices"][frames]
    return out

  def feature_dim(self) -> tuple[int, int]:
    """(W, D) of the audio windows."""
    example = self.window(self.clips[0], 0, 1)["audio"]
    return example.shape[1], example.shape[2]
