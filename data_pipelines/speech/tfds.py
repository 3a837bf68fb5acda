"""TFDS builder packing MemFace speech clips (`speech_layout`) into ArrayRecord, and its store.

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

  counts = speech_tfds.build('/data/memface', '/data/tfds')
  store = speech_tfds.TfdsSpeechStore({'root': counts['builder_dir'], 'feature': 'mel', ...})
  ds = speech_pipelines.train_dataset(config, store=store)
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import os
import pathlib
import shutil
import tempfile
import threading
from typing import Any

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from data_pipelines.speech import layout as speech_layout
from data_pipelines.speech import pipelines as speech_pipelines
from data_pipelines.fomm import tfds_builders
from data_pipelines.speech.layout import ClipEntry
from data_pipelines.fomm.tfds_store import find_builder_dir
from data_pipelines import audio as audio_lib

SPLIT = 'clips'
INDEX_FILE = 'speech_index.json'
SPLIT_SPECS = 'split_specs'  # builder_dir/split_specs/<speaker>/<clip>/split.json
AUDIO_DTYPES = {'int16': np.int16, 'float32': np.float32}

_INSTRUCTIONS = """\
Pass a MemFace speech-layout root (data_pipelines/speech/layout.py) as the manual dir:
`speech_tfds.build(ROOT, OUT)`.
"""


@dataclasses.dataclass
class SpeechBuilderConfig(tfds.core.BuilderConfig):
  """How audio is stored: 'int16' PCM (half the size) or 'float32'."""
  audio_dtype: str = 'int16'


def _config(audio_dtype: str) -> SpeechBuilderConfig:
  return SpeechBuilderConfig(name=audio_dtype, audio_dtype=audio_dtype,
                             description=f'16 kHz audio as {audio_dtype}')


def _array(shape: tuple[int | None, ...], dtype: Any) -> tfds.features.Tensor:
  return tfds.features.Tensor(shape=shape, dtype=dtype, encoding=tfds.features.Encoding.BYTES)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
  if not arrays:
    return b''
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()


def encode_audio(wave: np.ndarray, audio_dtype: str) -> np.ndarray:
  """float32 [-1, 1) samples -> the stored dtype (int16 PCM rounds; exact for int16 wavs)."""
  if audio_dtype == 'int16':
    return np.clip(np.round(np.asarray(wave, np.float64) * 32768), -32768, 32767).astype(np.int16)
  return np.asarray(wave, np.float32)


def decode_audio(stored: np.ndarray) -> np.ndarray:
  """Stored audio -> float32 samples as `speech_layout.read_audio` returns them."""
  if stored.dtype == np.int16:
    return stored.astype(np.float32) / np.float32(32768)
  return np.asarray(stored, np.float32)


class SpeechClips(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """MemFace speech layout in `manual_dir` -> one ArrayRecord example per clip."""

  name = 'speech_clips'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [_config('int16'), _config('float32')]

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # As in tfds_builders: avoids TFDS probing the undeclared `importlib_resources`.
    return epath.Path(inspect.getfile(cls))

  def _info(self) -> tfds.core.DatasetInfo:
    dtype = AUDIO_DTYPES[self.builder_config.audio_dtype]
    return self.dataset_info_from_configs(
        description='Audio-driven talking-face clips (MemFace speech layout).',
        features=tfds.features.FeaturesDict({
            'speaker': tfds.features.Text(),
            'clip': tfds.features.Text(),
            'split': tfds.features.Text(),
            'num_frames': tfds.features.Scalar(np.int32),
            'audio': _array((None,), dtype),
            'exp': _array((None, None), np.float32),
            'exp_names': tfds.features.Sequence(tfds.features.Text()),
            'id': _array((None,), np.float32),
            'pose': _array((None, 6), np.float32),
            'mouth_vertices': _array((None, None, 3), np.float32),
            'frame_index': _array((None,), np.int64),
            'audio_features': tfds.features.Tensor(shape=(), dtype=np.object_),
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
      t = len(coeffs['exp'])
      wav = folder / speech_layout.AUDIO
      wave = speech_layout.read_audio(wav) if wav.exists() else np.zeros(0, np.float32)
      vertices = folder / speech_layout.MOUTH_VERTICES
      split = folder / speech_layout.SPLIT
      features = {kind: np.load(folder / name) for kind, name in
                  speech_layout.FEATURE_FILES.items() if (folder / name).exists()}
      yield clip.key, {
          'speaker': clip.speaker,
          'clip': clip.name,
          'split': split.read_text() if split.exists() else '',
          'num_frames': t,
          'audio': encode_audio(wave, audio_dtype),
          'exp': coeffs['exp'],
          'exp_names': [str(n) for n in coeffs.get('exp_names', ())],
          'id': coeffs['id'],
          'pose': coeffs.get('pose', np.zeros((0, 6), np.float32)),
          'mouth_vertices': (np.load(vertices).astype(np.float32) if vertices.exists()
                             else np.zeros((0, 0, 3), np.float32)),
          'frame_index': speech_layout.read_frame_index(folder, t),
          'audio_features': _npz_bytes(features),
      }


def _text(value: Any) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def _open_source(builder_dir: pathlib.Path):
  return tfds.builder_from_directory(builder_dir).as_data_source(SPLIT)


def load_index(builder_dir: str | os.PathLike) -> list[dict[str, Any]]:
  """One row per record (speaker, clip, sizes, what it holds); scanned once, cached as json."""
  builder_dir = pathlib.Path(builder_dir)
  path = builder_dir / INDEX_FILE
  if path.is_file():
    return json.loads(path.read_text())
  source = _open_source(builder_dir)
  rows = []
  for record in range(len(source)):
    ex = source[record]
    rows.append({
        'record': record, 'speaker': _text(ex['speaker']), 'clip': _text(ex['clip']),
        'num_frames': int(ex['num_frames']), 'num_exp': int(ex['exp'].shape[1]),
        'num_id': int(ex['id'].shape[0]), 'samples': int(ex['audio'].shape[0]),
        'has_vertices': bool(ex['mouth_vertices'].shape[0]),
        'features': sorted(tfds_builders.decode_metadata(ex['audio_features'])),
        'split': _text(ex['split'])})
  rows.sort(key=lambda r: (r['speaker'], r['clip']))
  try:  # Cache for next time; a read-only dataset just rescans.
    tmp = path.with_name(f'.{INDEX_FILE}.{os.getpid()}.tmp')
    tmp.write_text(json.dumps(rows))
    os.replace(tmp, path)
  except OSError:
    pass
  return rows


def build(source: str | os.PathLike, out: str | os.PathLike, *, audio_dtype: str = 'int16'
          ) -> dict[str, Any]:
  """Builds `SpeechClips` from the speech-layout root `source` into `out`.

  Returns:
    {'dataset', 'builder_dir', 'clips', 'speakers', 'frames', 'samples', 'reused'}.
  """
  if audio_dtype not in AUDIO_DTYPES:
    raise ValueError(f'audio_dtype must be one of {sorted(AUDIO_DTYPES)}, got {audio_dtype!r}')
  source = pathlib.Path(source).resolve()
  if not source.is_dir():
    raise FileNotFoundError(f'source {source} is not a folder')
  builder = SpeechClips(data_dir=str(pathlib.Path(out).resolve()), config=audio_dtype,
                        file_format='array_record')
  builder_dir = pathlib.Path(builder.data_dir)
  reused = (builder_dir / 'dataset_info.json').is_file()
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(source), try_download_gcs=False))
  if not reused:  # The 3DMM of the coefficients, as speech_layout.load_face_model finds it.
    candidates = [source / speech_layout.FACE_MODEL]
    candidates += [path / speech_layout.FACE_MODEL
                   for _, _, path in speech_layout.find_clip_dirs(source)]
    found = next((c for c in candidates if c.is_file()), None)
    if found is not None:
      shutil.copyfile(found, builder_dir / speech_layout.FACE_MODEL)
  rows = load_index(builder_dir)
  return {
      'dataset': SpeechClips.name,
      'builder_dir': str(builder_dir),
      'clips': len(rows),
      'speakers': len({r['speaker'] for r in rows}),
      'frames': sum(r['num_frames'] for r in rows),
      'samples': sum(r['samples'] for r in rows),
      'reused': reused,
  }


class TfdsSpeechStore(speech_pipelines.SpeechStore):
  """A `SpeechStore` over a `SpeechClips` build: same clips, splits, arrays and windows.

  `config.root` is the builder dir or the `out` of `build` (found as in `tfds_store`);
  `config.face_model` overrides the copied face_model.npz. Pass it as
  `speech_pipelines.train_dataset(config, store=store)` (or `eval_dataset`).
  """

  def __init__(self, config: Any, cache_size: int = 4096):  # pylint: disable=super-init-not-called
    self.config = cfg = speech_pipelines.as_speech_config(config)
    if cfg.feature not in speech_pipelines.FEATURE_KINDS:
      raise ValueError(f'feature must be one of {speech_pipelines.FEATURE_KINDS}, got '
                       f'{cfg.feature!r}')
    self.builder_dir = find_builder_dir(cfg.root)
    self._source = None
    self._lock = threading.Lock()
    rows = load_index(self.builder_dir)
    if not rows:
      raise speech_layout.SpeechLayoutError(self.builder_dir, 'the build holds no clips')
    self._records: dict[str, int] = {}
    specs = self._split_dir(rows)
    self.clips = []
    for row in rows:
      clip = ClipEntry(speaker=row['speaker'], name=row['clip'],
                       path=specs / row['speaker'] / row['clip'], num_frames=row['num_frames'],
                       num_exp=row['num_exp'], num_id=row['num_id'])
      self._check_audio(clip, row)
      self._records[clip.key] = row['record']
      self.clips.append(clip)
    sizes = {(r['num_exp'], r['num_id']) for r in rows}
    if len(sizes) > 1:
      raise speech_layout.SpeechLayoutError(self.builder_dir, f'clips disagree on (n_exp, n_id): '
                                            f'{sorted(sizes)}')
    self.splits = speech_layout.split_clips(self.clips, cfg.test_fraction, cfg.test_speakers,
                                            cfg.split_seed)
    self.speakers = speech_layout.speaker_names(self.clips)
    self._speaker_index = {s: i for i, s in enumerate(self.speakers)}
    self.face_model = speech_layout.load_face_model(cfg.face_model or self.builder_dir)
    first = self.read_clip(self.clips[0])
    names = first['exp_names'] or None
    if names is None and self.face_model is not None:
      names = self.face_model.exp_names
    self.exp_names = None if names is None else tuple(str(n) for n in names)
    self.num_exp, self.num_id = first['exp'].shape[1], len(first['id'])
    self.exp_index = speech_pipelines._resolve_components(  # pylint: disable=protected-access
        cfg.exp_components, self.exp_names, self.num_exp)
    if self.face_model is not None and self.face_model.n_exp != self.num_exp:
      raise speech_layout.SpeechLayoutError(
          cfg.root, f'face model has {self.face_model.n_exp} expression components, the clips '
          f'{self.num_exp}')
    self.has_vertices = all(r['has_vertices'] for r in rows) or self.face_model is not None
    self._cache: dict[str, dict[str, np.ndarray]] = {}
    self._cache_size = cache_size
    self._stats = None
    if cfg.normalize_features:
      self._stats = self._feature_stats(self.splits[cfg.train_split] or self.clips)

  def _check_audio(self, clip: ClipEntry, row: dict[str, Any]) -> None:
    feature = self.config.feature
    if feature == 'mel' and not row['samples']:
      raise speech_layout.SpeechLayoutError(f'{self.builder_dir}:{clip.key}',
                                            'no audio (the clip had no audio.wav)')
    if feature != 'mel' and feature not in row['features']:
      raise speech_layout.SpeechLayoutError(f'{self.builder_dir}:{clip.key}',
                                            f'no {feature} features (config asks for them)')

  def _split_dir(self, rows: list[dict[str, Any]]) -> pathlib.Path:
    """A folder of the clips' split.json files, for `speech_layout.split_clips` to read."""
    with_spec = [r for r in rows if r['split']]
    for base in (self.builder_dir / SPLIT_SPECS, None):
      try:
        base = base or pathlib.Path(tempfile.mkdtemp(prefix='speech_split_specs_'))
        for row in with_spec:
          path = base / row['speaker'] / row['clip'] / speech_layout.SPLIT
          if not path.is_file() or path.read_text() != row['split']:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(row['split'])
        return base
      except OSError:  # Read-only build: a temporary folder.
        continue
    raise OSError('cannot write split specs')  # Unreachable unless /tmp is read-only.

  def _record(self, clip: ClipEntry) -> dict[str, Any]:
    with self._lock:
      if self._source is None:
        self._source = _open_source(self.builder_dir)
      source = self._source
    example = source[self._records[clip.key]]
    if _text(example['speaker']) != clip.speaker or _text(example['clip']) != clip.name:
      raise speech_layout.SpeechLayoutError(
          self.builder_dir, f'record of {clip.key} holds another clip: delete the stale '
          f'{INDEX_FILE}')
    return example

  def read_clip(self, clip: ClipEntry) -> dict[str, Any]:
    """A clip's stored arrays as the folder readers return them (audio as `read_audio`)."""
    ex = self._record(clip)
    out = {'audio': decode_audio(ex['audio']), 'exp': ex['exp'], 'id': ex['id'],
           'frame_index': ex['frame_index'], 'exp_names': [_text(n) for n in ex['exp_names']],
           'split': _text(ex['split']),
           'features': tfds_builders.decode_metadata(ex['audio_features'])}
    if len(ex['pose']):
      out['pose'] = ex['pose']
    if len(ex['mouth_vertices']):
      out['mouth_vertices'] = ex['mouth_vertices']
    return out

  def _features_of(self, data: dict[str, Any]) -> np.ndarray:
    feature = self.config.feature
    if feature == 'mel':
      # pylint: disable=protected-access
      wave = data['audio']
      padded = np.pad(wave, (0, -len(wave) % speech_pipelines._BUCKET))
      feats = np.asarray(speech_pipelines._log_mel(padded, audio_lib.MelConfig()))
      # pylint: enable=protected-access
      return feats[:audio_lib.num_feature_frames(len(wave))]
    array = data['features'][feature].astype(np.float32)
    if array.ndim == 3 and array.shape[0] == 1 and feature not in ('deepspeech', 'windows'):
      array = array[0]
    return array

  def _raw_features(self, clip: ClipEntry) -> np.ndarray:
    return self._features_of(self.read_clip(clip))

  def arrays(self, clip: ClipEntry) -> dict[str, np.ndarray]:
    """Whole-clip arrays (cached), as `SpeechStore.arrays`."""
    with self._lock:
      cached = self._cache.get(clip.key)
    if cached is not None:
      return cached
    data = self.read_clip(clip)
    feats = self._features_of(data)
    if self._stats is not None:
      feats = (feats - self._stats[0]) / self._stats[1]
    out = {'features': feats.astype(np.float32), 'exp_all': data['exp'],
           'exp': data['exp'][:, self.exp_index], 'id': data['id'],
           'frame_index': data['frame_index']}
    if self.has_vertices:
      if 'mouth_vertices' in data:
        out['mouth_vertices'] = data['mouth_vertices'].astype(np.float32)
      else:
        out['mouth_vertices'] = self._mouth_vertices(data['id'], data['exp'])
    self._cache_put(clip.key, out)
    return out

  def __getstate__(self):
    state = self.__dict__.copy()
    state['_source'] = None  # Reopened lazily in each worker process.
    del state['_lock']
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def __repr__(self) -> str:
    return f'TfdsSpeechStore({self.builder_dir}, clips={len(self.clips)})'
