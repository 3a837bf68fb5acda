"""Synthetic speech-side test data that several test files share (tests/ is on sys.path).

  make_toy_dataset   a learnable toy dataset in the speech layout (no espeak needed)
  synthetic_clip     face model, identity and motion of a synthetic clip
  speech_track       a speech (or tone) wav of a given length
"""
from __future__ import annotations

import pathlib

import numpy as np
from scipy.io import wavfile

from data_pipelines.speech import layout as speech_layout
from data_pipelines.synthetic import speech_audio as speech
from data_pipelines.synthetic import video_set
from data_pipelines.synthetic.engine import face_model as face_model_lib
from data_pipelines.synthetic.engine import motion as motion_lib

EXP_NAMES = ("jaw_open", "lip_round", "lip_stretch", "blink_left", "brow_raise")


def toy_face_model(seed=0, vertices=40, mouth=6) -> face_model_lib.FaceModel:
  rng = np.random.default_rng(seed)
  return face_model_lib.FaceModel(
      mean=rng.normal(size=(vertices, 3)).astype(np.float32),
      id_basis=(0.1 * rng.normal(size=(4, vertices, 3))).astype(np.float32),
      exp_basis=(0.1 * rng.normal(size=(len(EXP_NAMES), vertices, 3))).astype(np.float32),
      exp_names=EXP_NAMES, triangles=np.array([[0, 1, 2]], np.int32),
      mouth_vertex_ids=np.arange(mouth, dtype=np.int32),
      landmark_vertex_ids=rng.integers(0, vertices, 68).astype(np.int32))


def make_toy_dataset(root, speakers=3, clips=3, seed=0, lengths=(40, 70)) -> pathlib.Path:
  """Learnable toy data in the layout, no espeak: jaw follows the loudness of a tone."""
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  model = toy_face_model(seed)
  model.save(root / "face_model.npz")
  rng = np.random.default_rng(seed)
  for s in range(speakers):
    gain = 0.5 + 0.5 * s / max(speakers - 1, 1)  # Speaker habit: how wide the jaw opens.
    ident = rng.normal(size=4).astype(np.float32)
    for c in range(clips):
      t = int(rng.integers(*lengths))
      n = t * 640 - int(rng.integers(0, 600))  # ceil(n / 640) == t frames.
      envelope = np.clip(np.sin(np.linspace(0, rng.uniform(4, 12), t)), 0, 1)
      sample_env = np.interp(np.arange(n) / 16000, np.arange(t) / 25, envelope)
      freq = rng.uniform(150, 400)
      audio = 0.5 * sample_env * np.sin(2 * np.pi * freq * np.arange(n) / 16000)
      exp = np.zeros((t, len(EXP_NAMES)), np.float32)
      exp[:, 0] = gain * envelope
      exp[:, 1] = 0.3 * envelope ** 2
      exp[:, 3] = rng.uniform(size=t) > 0.9  # Blinks: not in the audio.
      vertices = model.vertices(ident, exp)[:, model.mouth_vertex_ids]
      speech_layout.write_clip(root / f"s{s}" / f"c{c}", audio, exp, ident,
                               pose=np.zeros((t, 6)), mouth_vertices=vertices, exp_names=EXP_NAMES)
  return root


def synthetic_clip(num_frames: int, seed: int, style: str | None = None):
  """(face model, identity, motion) of identity `seed`, no occluders."""
  model = face_model_lib.build_face_model()
  identity = video_set.sample_identity(model, seed, 0)
  rng = np.random.default_rng(seed)
  motion = motion_lib.sample_clip_motion(rng, num_frames, model.exp_names, style=style)
  return model, identity, motion


def speech_track(seconds: float, path: pathlib.Path,
                 text: str = "The quick brown fox jumps over the lazy dog. " * 8,
                 tone_hz: float = 180, syllable_hz: float = 4) -> None:
  """A 16 kHz wav of `seconds`: espeak saying `text` (repeated or cut to length) when available,
  else a `tone_hz` tone modulated at `syllable_hz`."""
  rate = 16000
  if speech.is_available():
    wave = speech.synthesize(text).audio
  else:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * tone_hz * t) * (0.5 + 0.5 * np.sin(2 * np.pi * syllable_hz * t))
  wave = np.resize(wave, int(seconds * rate))
  wavfile.write(path, rate, (np.clip(wave, -1, 1) * 32767).astype(np.int16))
