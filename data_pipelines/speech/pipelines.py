"""Grain pipelines of frame-aligned windows for audio-to-expression training (MemFace stage 1).

An example is a window of `window` consecutive 25 fps frames of one clip (layout:
`data_pipelines/speech/layout.py`):

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
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import jax
import numpy as np

from data_pipelines.speech import layout as speech_layout
from data_pipelines.fomm.pipelines import train_slot_dataset
from data_pipelines.speech.layout import ClipEntry
from data_pipelines import audio as audio_lib

FEATURE_KINDS = ("mel", "deepspeech", "hubert", "wav2vec", "windows")
_BUCKET = 16000  # Waveforms are zero-padded to whole seconds: one log-mel compile per bucket.
_log_mel = audio_lib._log_mel_jit  # pylint: disable=protected-access


@dataclasses.dataclass
class SpeechDataConfig:
  """Settings of the speech pipelines (an ml_collections ConfigDict with these fields works too).

  Attributes:
    root: dataset root (speech_layout), or with format='tfds' the output of speech_tfds.build.
    format: 'folders' (the per-speaker layout) or 'tfds' (ArrayRecord shards of speech_tfds).
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


def open_store(config: Any) -> "SpeechStore":
  """The store named by config.format: the folder layout or a speech_tfds build."""
  cfg = as_speech_config(config)
  if cfg.format == "tfds":
    from data_pipelines.speech.tfds import TfdsSpeechStore  # circular at module level
    return TfdsSpeechStore(cfg)
  if cfg.format != "folders":
    raise ValueError(f"data.format must be 'folders' or 'tfds', got {cfg.format!r}")
  return SpeechStore(cfg)


def as_speech_config(config: Any) -> SpeechDataConfig:
  """SpeechDataConfig from itself, a dict, a ConfigDict or any attribute object (extras ignored)."""
  if isinstance(config, SpeechDataConfig):
    return config
  values = {}
  for field in dataclasses.fields(SpeechDataConfig):
    if isinstance(config, Mapping) and field.name in config:
      values[field.name] = config[field.name]
    elif not isinstance(config, Mapping) and hasattr(config, field.name):
      values[field.name] = getattr(config, field.name)
  for key in ("exp_components", "test_speakers"):
    if isinstance(values.get(key), list):
      values[key] = tuple(values[key])
  return SpeechDataConfig(**values)


def _resolve_components(components: Any, exp_names: Sequence[str] | None, num_exp: int
                        ) -> np.ndarray:
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


class SpeechStore:
  """Clips of one dataset, its split, the selected coefficients and cached per-clip arrays."""

  def __init__(self, config: Any, cache_size: int = 4096):
    self.config = cfg = as_speech_config(config)
    if cfg.feature not in FEATURE_KINDS:
      raise ValueError(f"feature must be one of {FEATURE_KINDS}, got {cfg.feature!r}")
    require = "wav" if cfg.feature == "mel" else cfg.feature
    self.clips = speech_layout.list_clips(cfg.root, require_audio=require)
    self.splits = speech_layout.split_clips(self.clips, cfg.test_fraction, cfg.test_speakers,
                                            cfg.split_seed)
    self.speakers = speech_layout.speaker_names(self.clips)
    self._speaker_index = {s: i for i, s in enumerate(self.speakers)}
    self.face_model = speech_layout.load_face_model(cfg.face_model or cfg.root, self.clips)
    first = speech_layout.read_coeffs(self.clips[0].path / speech_layout.COEFFS)
    names = first.get("exp_names")
    if names is None and self.face_model is not None:
      names = self.face_model.exp_names
    self.exp_names = None if names is None else tuple(str(n) for n in names)
    self.num_exp, self.num_id = first["exp"].shape[1], len(first["id"])
    self.exp_index = _resolve_components(cfg.exp_components, self.exp_names, self.num_exp)
    if self.face_model is not None and self.face_model.n_exp != self.num_exp:
      raise speech_layout.SpeechLayoutError(
          cfg.root, f"face model has {self.face_model.n_exp} expression components, the clips "
          f"{self.num_exp}")
    has_vertices = [(c.path / speech_layout.MOUTH_VERTICES).exists() for c in self.clips]
    self.has_vertices = all(has_vertices) or self.face_model is not None
    self._cache: dict[str, dict[str, np.ndarray]] = {}
    self._cache_size = cache_size
    self._lock = threading.Lock()
    self._stats = None
    if cfg.normalize_features:
      self._stats = self._feature_stats(self.splits[cfg.train_split] or self.clips)

  # -- per-clip arrays --------------------------------------------------------------------------
  @property
  def selected_names(self) -> tuple[str, ...] | None:
    return None if self.exp_names is None else tuple(self.exp_names[i] for i in self.exp_index)

  def speaker_id(self, clip: ClipEntry) -> int:
    return self._speaker_index[clip.speaker]

  def _raw_features(self, clip: ClipEntry) -> np.ndarray:
    """(2T', D) 50 Hz features, or (T', W, D) DeepSpeech windows."""
    cfg = self.config
    if cfg.feature == "mel":
      wave = speech_layout.read_audio(clip.path / speech_layout.AUDIO)
      padded = np.pad(wave, (0, -len(wave) % _BUCKET))
      feats = np.asarray(_log_mel(padded, audio_lib.MelConfig()))
      return feats[:audio_lib.num_feature_frames(len(wave))]
    array = np.load(clip.path / speech_layout.FEATURE_FILES[cfg.feature]).astype(np.float32)
    if array.ndim == 3 and array.shape[0] == 1 and cfg.feature not in ("deepspeech", "windows"):
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
    feats = [self._raw_features(c) for c in picks]
    flat = np.concatenate([f.reshape(-1, f.shape[-1]) for f in feats])
    return flat.mean(0).astype(np.float32), np.maximum(flat.std(0), 1e-3).astype(np.float32)

  def arrays(self, clip: ClipEntry) -> dict[str, np.ndarray]:
    """Whole-clip arrays (cached): features, exp (T, C), mouth_vertices (T, M, 3), id."""
    with self._lock:
      cached = self._cache.get(clip.key)
    if cached is not None:
      return cached
    feats = self._raw_features(clip)
    if self._stats is not None:
      feats = (feats - self._stats[0]) / self._stats[1]
    coeffs = speech_layout.read_coeffs(clip.path / speech_layout.COEFFS)
    out = {"features": feats.astype(np.float32), "exp_all": coeffs["exp"],
           "exp": coeffs["exp"][:, self.exp_index], "id": coeffs["id"],
           "frame_index": speech_layout.read_frame_index(clip.path, clip.num_frames)}
    if self.has_vertices:
      path = clip.path / speech_layout.MOUTH_VERTICES
      if path.exists():
        out["mouth_vertices"] = np.load(path).astype(np.float32)
      else:
        out["mouth_vertices"] = self._mouth_vertices(coeffs["id"], coeffs["exp"])
    self._cache_put(clip.key, out)
    return out

  def _mouth_vertices(self, id_coeffs: np.ndarray, exp: np.ndarray) -> np.ndarray:
    """Mouth vertices from coefficients, for clips stored without mouth_vertices."""
    model = self.face_model
    return model.vertices(id_coeffs, exp)[:, model.mouth_vertex_ids].astype(np.float32)

  def _cache_put(self, key, arrays: dict[str, np.ndarray]) -> None:
    with self._lock:
      if len(self._cache) >= self._cache_size:
        self._cache.pop(next(iter(self._cache)))
      self._cache[key] = arrays

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


class _WindowFromSlot(grain.transforms.Map):
  def __init__(self, source: TrainWindowSource):
    self._source = source

  def map(self, element: tuple[int, int]) -> dict[str, np.ndarray]:
    key, slot = element
    return self._source.example(slot, key)


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if not 0 <= index < count:
    raise ValueError(f"process_index {index} not in [0, {count})")
  return index, count


def _to_iter(ds: grain.MapDataset, cfg: SpeechDataConfig) -> grain.IterDataset:
  threads = max(0, int(cfg.read_threads))
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                            prefetch_buffer_size=max(2, 2 * threads)))
  if cfg.worker_count > 0:
    from absl import flags
    if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags (tests, notebooks).
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.worker_count))
  return it


def train_dataset(config: Any, *, store: SpeechStore | None = None,
                  process_index: int | None = None, process_count: int | None = None
                  ) -> grain.IterDataset:
  """Batches of training windows (this process's share of each global batch)."""
  cfg = as_speech_config(config)
  index, count = _process(process_index, process_count)
  if cfg.batch_size % count:
    raise ValueError(f"global batch {cfg.batch_size} not divisible by {count} processes")
  store = open_store(cfg) if store is None else store
  source = TrainWindowSource(store)
  ds = train_slot_dataset(len(source), seed=cfg.seed, process_index=index, process_count=count,
                          num_epochs=cfg.num_epochs)
  ds = ds.map(_WindowFromSlot(source)).batch(cfg.batch_size // count, drop_remainder=True)
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
  index, count = _process(process_index, process_count)
  store = open_store(cfg) if store is None else store
  clips = store.splits[split or cfg.eval_split]
  if not clips:
    raise ValueError(f"no clips in split {split or cfg.eval_split!r} of {cfg.root}")
  global_batch = int(cfg.eval_batch_size or cfg.batch_size)
  if global_batch % count:
    raise ValueError(f"global eval batch {global_batch} not divisible by {count} processes")
  elements = [(n, s, True) for n, s in eval_windows(clips, cfg.window)]
  elements += [(elements[-1][0], elements[-1][1], False)] * (-len(elements) % global_batch)
  local = elements[index::count]
  ds = grain.MapDataset.source(local).map(_EvalWindow(store, clips, cfg.window))
  return _to_iter(ds.batch(global_batch // count, drop_remainder=True), cfg)
