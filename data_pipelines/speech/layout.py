"""On-disk layout of audio-driven talking-face data (MemFace), shared by real and synthetic data.

  root/
    face_model.npz            optional: a linear 3DMM in our face-model schema
                              (data_pipelines/synthetic/engine/face_model.py: mean (V,3),
                              id_basis (n_id,V,3), exp_basis (n_exp,V,3), exp_names, triangles,
                              mouth_vertex_ids, landmark_vertex_ids); turns coefficients into
                              (mouth) vertices
    dataset_info.json         optional: how the data was made
    <speaker>/
      speaker.json            optional, free-form
      <clip>/                 one recording
        audio.wav             16 kHz mono (other rates / channels are resampled / averaged)
        coeffs.npz            exp (T, n_exp), id (n_id,) or (T, n_id) (averaged), pose (T, 6);
                              optional exp_names (n_exp,), focal, fps (must be 25)
        mouth_vertices.npy    (T, M, 3) ground-truth mouth vertices (optional with face_model.npz:
                              then computed from the coefficients)
        video.mp4 | frames/   25 fps video (stage 2 only; not read here)
        deepspeech.npy        optional precomputed [T, 16, 29] windows, one per video frame
        hubert.npy            optional precomputed [2T, 1024] frames at 50 Hz (wav2vec.npy alike)
        meta.json             optional, free-form (text, phonemes)

T is the number of 25 fps video frames; frame t is at time t / 25 s and audio feature frame 2t
(50 Hz) is centred on it. The audio must cover the frames: ceil(seconds * 25) within 2 frames or
2 % of T.

A speaker folder holding these files directly (no clip sub-folders) is ONE clip: the output of
`data_pipelines/speech/prepare_speaker.py` for one long video. Its extra files are read too:
  face_model.npz              the 3DMM of its coefficients (used when root has none)
  frame_index.npy             (T,) source frame of each kept frame: audio.wav covers the whole
                              source timeline, so kept frame i's audio is centred on time
                              frame_index[i] / 25 s (dropped frames leave gaps, not shifts)
  audio_features.npy          (T, W, D) per-kept-frame audio windows (feature kind 'windows')
  split.json                  {"train": [...], "val" or "test": [...]}: kept-frame indices (or
                              [start, stop) ranges); without it the last `test_fraction` of the
                              frames is held out (the usual 10:1 of NeRF talking heads)
  frames/, landmarks.npy, audio_mel.npy, ...   stage-2 / preview files, not read here
A root that itself holds coeffs.npz is one speaker with one clip. Folders starting with '.' or '_'
are ignored (partially written clips).

`list_clips(root)` finds and validates every clip, with an error naming the file and the problem;
`split_clips` makes the train / test split by held-out clips (and optionally held-out speakers);
`write_clip` writes one clip (converters and the synthetic generator use it).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import warnings
import zlib
from typing import Any, Iterable, Sequence

import numpy as np

from data_pipelines.user_errors import UserInputError

FPS = 25
SAMPLE_RATE = 16000
COEFFS = "coeffs.npz"
AUDIO = "audio.wav"
MOUTH_VERTICES = "mouth_vertices.npy"
FACE_MODEL = "face_model.npz"
SPLIT = "split.json"
FRAME_INDEX = "frame_index.npy"
# Precomputed audio features: deepspeech [T_src, 16, 29] and hubert / wav2vec [2 T_src, D] on the
# source (audio) timeline; windows [T, W, D] one per kept frame (prepare_speaker's audio_features).
FEATURE_FILES = {"deepspeech": "deepspeech.npy", "hubert": "hubert.npy", "wav2vec": "wav2vec.npy",
                 "windows": "audio_features.npy"}

PathLike = str | os.PathLike


class SpeechLayoutError(UserInputError):
  """A clip or dataset does not follow the layout; the message names the file."""

  def __init__(self, path: PathLike, problem: str):
    super().__init__(f"{path}: {problem}")
    self.path = pathlib.Path(path)
    self.problem = problem


@dataclasses.dataclass(frozen=True)
class ClipEntry:
  """One clip, or a frame range of one (single-clip speakers split by time)."""
  speaker: str
  name: str
  path: pathlib.Path
  num_frames: int  # T of the whole clip.
  num_exp: int = 0
  num_id: int = 0
  start: int = 0
  stop: int | None = None  # Exclusive; None = num_frames.

  @property
  def key(self) -> str:
    return f"{self.speaker}/{self.name}"

  @property
  def end(self) -> int:
    return self.num_frames if self.stop is None else self.stop

  @property
  def length(self) -> int:
    return self.end - self.start


# --------------------------------------------------------------------------------------------------
# Reading files.


def read_coeffs(path: PathLike) -> dict[str, np.ndarray]:
  """coeffs.npz -> {'exp' (T, n_exp), 'id' (n_id,), and 'pose' (T, 6) / 'exp_names' if present}."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise SpeechLayoutError(path, "missing (expression coefficients per frame)")
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
  except (OSError, ValueError) as e:
    raise SpeechLayoutError(path, f"unreadable npz ({e})") from e
  if "exp" not in arrays:
    raise SpeechLayoutError(path, f"needs an 'exp' array (T, n_exp); has {sorted(arrays)}")
  exp = arrays["exp"]
  if exp.ndim != 2 or not len(exp):
    raise SpeechLayoutError(path, f"'exp' must be (T, n_exp) with T > 0, got {exp.shape}")
  out = {"exp": exp.astype(np.float32)}
  ident = arrays.get("id")
  if ident is None:
    raise SpeechLayoutError(path, "needs an 'id' array (n_id,) of identity coefficients")
  if ident.ndim == 2:  # Per-frame identity from a tracker: one identity per clip.
    ident = ident.mean(0)
  if ident.ndim != 1:
    raise SpeechLayoutError(path, f"'id' must be (n_id,) or (T, n_id), got {ident.shape}")
  out["id"] = ident.astype(np.float32)
  if "pose" in arrays:
    if arrays["pose"].shape != (len(exp), 6):
      raise SpeechLayoutError(path, f"'pose' must be (T, 6) = {(len(exp), 6)}, got "
                              f"{arrays['pose'].shape}")
    out["pose"] = arrays["pose"].astype(np.float32)
  if "exp_names" in arrays:
    if arrays["exp_names"].shape != (exp.shape[1],):
      raise SpeechLayoutError(path, f"'exp_names' must have {exp.shape[1]} entries")
    out["exp_names"] = arrays["exp_names"].astype(str)
  if "fps" in arrays and abs(float(arrays["fps"]) - FPS) > 1e-3:
    raise SpeechLayoutError(path, f"frames must be {FPS} fps, got {float(arrays['fps'])}")
  return out


def read_frame_index(folder: PathLike, num_frames: int) -> np.ndarray:
  """(T,) source-timeline frame of each kept frame: frame_index.npy, or 0..T-1 without one."""
  path = pathlib.Path(folder) / FRAME_INDEX
  if not path.exists():
    return np.arange(num_frames)
  index = np.load(path)
  if index.shape != (num_frames,) or not np.issubdtype(index.dtype, np.integer):
    raise SpeechLayoutError(path, f"expected ({num_frames},) integers (one per frame of "
                            f"{COEFFS}), got {index.shape} {index.dtype}")
  if num_frames and (index[0] < 0 or np.any(np.diff(index) <= 0)):
    raise SpeechLayoutError(path, "source frames must be >= 0 and strictly increasing")
  return index.astype(np.int64)


def read_audio(path: PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """A .wav file as float32 mono at `sample_rate` (resampled if needed)."""
  from scipy.io import wavfile
  try:
    rate, wave = wavfile.read(path)
  except (OSError, ValueError) as e:
    raise SpeechLayoutError(path, f"unreadable wav ({e})") from e
  if np.issubdtype(wave.dtype, np.integer):
    wave = wave / float(np.iinfo(wave.dtype).max + 1)
  wave = np.asarray(wave, np.float32)
  if wave.ndim == 2:
    wave = wave.mean(-1)
  if rate != sample_rate:
    from scipy import signal
    g = np.gcd(int(rate), sample_rate)
    wave = signal.resample_poly(wave, sample_rate // g, int(rate) // g).astype(np.float32)
  return wave


def audio_duration(path: PathLike) -> float:
  """Seconds of audio, from the header only."""
  from scipy.io import wavfile
  try:
    rate, wave = wavfile.read(path, mmap=True)
  except (OSError, ValueError) as e:
    raise SpeechLayoutError(path, f"unreadable wav ({e})") from e
  return len(wave) / float(rate)


def find_face_model(path: PathLike, folders: Iterable[PathLike] = ()) -> pathlib.Path | None:
  """The 3DMM file at `path` (a file, or a root holding face_model.npz), else the first
  face_model.npz in `folders` (prepare_speaker writes one per speaker); None if there is none."""
  path = pathlib.Path(path)
  candidates = [path / FACE_MODEL if path.is_dir() else path]
  candidates += [pathlib.Path(f) / FACE_MODEL for f in folders]
  return next((c for c in candidates if c.is_file()), None)


def load_face_model(path: PathLike, clips: Sequence["ClipEntry"] = ()):
  """The 3DMM `find_face_model` finds at `path` or in the clips' folders; None if there is none."""
  from data_pipelines.synthetic.engine import face_model as face_model_lib
  found = find_face_model(path, [c.path for c in clips])
  return None if found is None else face_model_lib.FaceModel.load(found)


def write_clip(folder: PathLike, audio: np.ndarray, exp: np.ndarray, id_coeffs: np.ndarray,
               pose: np.ndarray | None = None, mouth_vertices: np.ndarray | None = None,
               exp_names: Sequence[str] | None = None, sample_rate: int = SAMPLE_RATE,
               **extra_coeffs: np.ndarray) -> pathlib.Path:
  """Writes audio.wav (int16), coeffs.npz and mouth_vertices.npy of one clip into `folder`."""
  from scipy.io import wavfile
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  pcm = np.round(np.clip(np.asarray(audio, np.float32), -1.0, 32767 / 32768) * 32768)
  wavfile.write(folder / AUDIO, sample_rate, pcm.astype(np.int16))
  arrays = dict(exp=np.asarray(exp, np.float32), id=np.asarray(id_coeffs, np.float32),
                fps=np.float32(FPS), **extra_coeffs)
  if pose is not None:
    arrays["pose"] = np.asarray(pose, np.float32)
  if exp_names is not None:
    arrays["exp_names"] = np.array(list(exp_names), dtype=str)
  np.savez(folder / COEFFS, **arrays)
  if mouth_vertices is not None:
    np.save(folder / MOUTH_VERTICES, np.asarray(mouth_vertices, np.float32))
  return folder


# --------------------------------------------------------------------------------------------------
# Finding and validating clips.


def _visible_dirs(folder: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def find_clip_dirs(root: PathLike) -> list[tuple[str, str, pathlib.Path]]:
  """(speaker, clip, folder) of every clip under root, sorted."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise SpeechLayoutError(root, "dataset root does not exist or is not a folder")
  if (root / COEFFS).exists():
    return [(root.name, root.name, root)]
  found = []
  for speaker in _visible_dirs(root):
    if (speaker / COEFFS).exists():
      found.append((speaker.name, speaker.name, speaker))
      continue
    found += [(speaker.name, c.name, c) for c in _visible_dirs(speaker) if (c / COEFFS).exists()]
  if not found:
    raise SpeechLayoutError(root, f"no clips: expected <speaker>/<clip>/{COEFFS} or "
                            f"<speaker>/{COEFFS} (see data_pipelines/speech/layout.py)")
  return found


def _close(frames: int, expected: int) -> bool:
  return abs(frames - expected) <= max(2, int(0.02 * expected))


def validate_clip(folder: PathLike, speaker: str, name: str, require_audio: str | None = None
                  ) -> ClipEntry:
  """Checks one clip folder's files against each other and returns its entry.

  Args:
    folder: the clip folder.
    speaker, name: its names.
    require_audio: an audio feature kind the clip must provide ('wav' / 'mel' need audio.wav,
      'deepspeech' / 'hubert' / 'wav2vec' their .npy); None: any of them.
  """
  folder = pathlib.Path(folder)
  coeffs = read_coeffs(folder / COEFFS)
  t = len(coeffs["exp"])
  source = int(read_frame_index(folder, t)[-1]) + 1  # Source-timeline frames the clip spans.
  gaps = (folder / FRAME_INDEX).exists()
  covers = lambda n: n >= source - 2 if gaps else _close(n, t)  # noqa: E731
  wav = folder / AUDIO
  features = {k: folder / f for k, f in FEATURE_FILES.items() if (folder / f).exists()}
  if require_audio in ("wav", "mel") and not wav.exists():
    raise SpeechLayoutError(wav, "missing (16 kHz mono audio of the clip)")
  if require_audio in FEATURE_FILES and require_audio not in features:
    raise SpeechLayoutError(folder / FEATURE_FILES[require_audio],
                            f"missing (config asks for {require_audio} features)")
  if not wav.exists() and not features:
    raise SpeechLayoutError(folder, f"no audio: needs {AUDIO} or one of "
                            f"{sorted(FEATURE_FILES.values())}")
  if wav.exists():
    frames = int(np.ceil(audio_duration(wav) * FPS - 1e-6))
    if not covers(frames):
      raise SpeechLayoutError(wav, f"covers {frames} frames at {FPS} fps but {COEFFS} has {t}"
                              + (f" spanning {source} source frames" if gaps else ""))
  for kind, path in features.items():
    shape = np.load(path, mmap_mode="r").shape
    if kind == "windows":
      ok, want = len(shape) == 3 and shape[0] == t, f"[{t}, W, D] (one window per frame)"
    elif kind == "deepspeech":
      ok, want = len(shape) == 3 and covers(shape[0]), f"[{source}, W, D] (one window per frame)"
    else:
      if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
      ok, want = len(shape) == 2 and covers(shape[0] // 2), f"[{2 * source}, D] at 50 Hz"
    if not ok:
      raise SpeechLayoutError(path, f"shape {shape}, expected {want}")
  vertices = folder / MOUTH_VERTICES
  if vertices.exists():
    shape = np.load(vertices, mmap_mode="r").shape
    if len(shape) != 3 or shape[0] != t or shape[2] != 3:
      raise SpeechLayoutError(vertices, f"shape {shape}, expected ({t}, M, 3)")
  return ClipEntry(speaker=speaker, name=name, path=folder, num_frames=t,
                   num_exp=coeffs["exp"].shape[1], num_id=len(coeffs["id"]))


def list_clips(root: PathLike, require_audio: str | None = None) -> list[ClipEntry]:
  """Every clip under root, validated; coefficient sizes must agree across clips."""
  clips = [validate_clip(path, s, c, require_audio) for s, c, path in find_clip_dirs(root)]
  sizes = {}
  for clip in clips:
    sizes.setdefault((clip.num_exp, clip.num_id), clip.path)
  if len(sizes) > 1:
    raise SpeechLayoutError(root, "clips disagree on (n_exp, n_id): " +
                            ", ".join(f"{k} in {v}" for k, v in sizes.items()))
  return clips


# --------------------------------------------------------------------------------------------------
# Splits.


def _stable_rng(seed: int, name: str) -> np.random.Generator:
  """A generator depending on (seed, name) only, not on what else is in the dataset."""
  return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def _ranges(clip: ClipEntry, ranges: Iterable[Sequence[int]]) -> list[ClipEntry]:
  out = []
  for start, stop in ranges:
    start, stop = max(0, int(start)), min(clip.num_frames, int(stop))
    if stop > start:
      out.append(dataclasses.replace(clip, start=start, stop=stop))
  return out


def _index_runs(indices: Sequence[int]) -> list[tuple[int, int]]:
  """Sorted frame indices -> [start, stop) runs of consecutive frames."""
  idx = np.unique(np.asarray(indices, np.int64))
  if not idx.size:
    return []
  breaks = np.flatnonzero(np.diff(idx) != 1)
  starts = np.concatenate([[idx[0]], idx[breaks + 1]])
  stops = np.concatenate([idx[breaks] + 1, [idx[-1] + 1]])
  return list(zip(starts.tolist(), stops.tolist()))


def _split_entries(clip: ClipEntry, spec: Any) -> list[ClipEntry]:
  """Frame ranges [[start, stop], ...] or kept-frame indices [i, ...] -> entries."""
  spec = list(spec)
  if spec and all(isinstance(x, (int, np.integer)) for x in spec):
    return _ranges(clip, _index_runs(spec))
  return _ranges(clip, spec)


def _time_split(clip: ClipEntry, test_fraction: float) -> dict[str, list[ClipEntry]]:
  split_file = clip.path / SPLIT
  if split_file.exists():
    try:
      spec = json.loads(split_file.read_text())
      return {"train": _split_entries(clip, spec.get("train", [])),
              "test": _split_entries(clip, spec.get("test", spec.get("val", [])))}
    except (ValueError, TypeError, AttributeError) as e:
      raise SpeechLayoutError(split_file, "expected {'train': [...], 'test' or 'val': [...]} of "
                              f"frame indices or [start, stop] ranges ({e})") from e
  cut = clip.num_frames - int(round(clip.num_frames * test_fraction))
  return {"train": _ranges(clip, [(0, cut)]), "test": _ranges(clip, [(cut, clip.num_frames)])}


def split_clips(clips: Sequence[ClipEntry], test_fraction: float = 0.1,
                test_speakers: int | Sequence[str] = 0, seed: int = 0
                ) -> dict[str, list[ClipEntry]]:
  """Train / test split by held-out clips, optionally also held-out speakers.

  Per speaker, round(n * test_fraction) clips (at least 1 when n >= 2 and test_fraction > 0, at most
  n - 1) are held out, chosen from (seed, speaker name) only. A speaker with one clip is split by
  time (see the module docstring). `test_speakers` (a count, drawn from the seed, or names) holds
  out every clip of those speakers.

  Returns:
    {'train', 'test' (all held out), 'test_seen' (held-out clips of training speakers),
     'test_unseen' (clips of held-out speakers)} lists of entries.
  """
  by_speaker: dict[str, list[ClipEntry]] = {}
  for clip in clips:
    by_speaker.setdefault(clip.speaker, []).append(clip)
  speakers = sorted(by_speaker)
  if isinstance(test_speakers, (int, np.integer)):
    count = int(test_speakers)
    if count >= len(speakers) > 0:
      raise ValueError(f"test_speakers={count} leaves no training speaker of {len(speakers)}")
    held = set(_stable_rng(seed, "speakers").permutation(speakers)[:count].tolist())
  else:
    held = set(test_speakers)
    unknown = held - set(speakers)
    if unknown:
      raise ValueError(f"test_speakers {sorted(unknown)} are not in the dataset ({speakers})")
  out = {"train": [], "test_seen": [], "test_unseen": []}
  for speaker in speakers:
    group = sorted(by_speaker[speaker], key=lambda c: c.name)
    if speaker in held:
      out["test_unseen"] += group
      continue
    if len(group) == 1:
      parts = _time_split(group[0], test_fraction)
      out["train"] += parts["train"]
      out["test_seen"] += parts["test"]
      continue
    n_test = int(round(len(group) * test_fraction))
    if test_fraction > 0:
      n_test = min(max(n_test, 1), len(group) - 1)
    order = _stable_rng(seed, speaker).permutation(len(group))
    test = set(order[:n_test].tolist())
    for i, clip in enumerate(group):
      out["test_seen" if i in test else "train"].append(clip)
  out["test"] = out["test_seen"] + out["test_unseen"]
  if not out["train"]:
    warnings.warn(f"the split leaves no training clips ({len(clips)} clips)")
  return out


def speaker_names(clips: Sequence[ClipEntry]) -> list[str]:
  """Sorted distinct speaker names (speaker ids index this list)."""
  return sorted({c.speaker for c in clips})


def dataset_info(root: PathLike) -> dict[str, Any]:
  path = pathlib.Path(root) / "dataset_info.json"
  return json.loads(path.read_text()) if path.exists() else {}
