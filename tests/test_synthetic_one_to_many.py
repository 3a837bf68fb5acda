"""Synthetic data where the input underdetermines the output (MemFace's premise).

Stage 1: a per-clip speaking mode (`clip_latent`) must change the mouth for the same phonemes while
the audio barely shows it. Stage 2: a speaker's mouth interior (`appearance.MouthInterior`) must be
invisible with the mouth closed, visible when it opens, and differ between speakers.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from data_pipelines.speech import layout as speech_layout
from data_pipelines.synthetic import clip_latent
from data_pipelines.synthetic import speech_audio
from data_pipelines.synthetic import speech_set
from data_pipelines.synthetic import visemes
from data_pipelines.synthetic.engine import appearance as appearance_lib
from data_pipelines.synthetic.engine import face_model as face_model_lib
from data_pipelines.synthetic.engine import renderer as renderer_lib
from data_pipelines.synthetic.engine import scene as scene_lib

PHONEMES = [(0.0, 0.1, "_"), (0.1, 0.2, "b"), (0.2, 0.35, "I"), (0.35, 0.45, "n"),
            (0.45, 0.55, "b"), (0.55, 0.65, "l"), (0.65, 0.85, "u:"), (0.85, 1.0, "_")]
needs_espeak = pytest.mark.skipif(not speech_audio.is_available(), reason=speech_audio.INSTALL_HINT)


@pytest.fixture(scope="module")
def model():
  return face_model_lib.build_face_model()


def test_same_phonemes_different_latent_different_mouth():
  style = visemes.SpeakerStyle()
  tracks = {mode: visemes.mouth_track(PHONEMES, clip_latent.ClipLatent(mode, 1.0).apply_style(style),
                                      25)[0] for mode in clip_latent.MODE_NAMES}
  jaw, stretch = visemes.NAMES.index("jaw_open"), visemes.NAMES.index("lip_stretch")
  np.testing.assert_array_equal(tracks["neutral"], visemes.mouth_track(PHONEMES, style, 25)[0])
  assert tracks["emphatic"][:, jaw].max() > 3 * tracks["sad"][:, jaw].max()
  assert tracks["happy"][:, stretch].mean() > 2 * tracks["sad"][:, stretch].mean()
  for a in clip_latent.MODE_NAMES:  # Every pair of modes differs clearly somewhere.
    for b in clip_latent.MODE_NAMES:
      if a < b:
        assert np.abs(tracks[a] - tracks[b]).max() > 0.1, (a, b)
  weak = clip_latent.ClipLatent("happy", 0.3).prosody(0.25)
  assert abs(weak["pitch"]) < 1 and abs(weak["rate"]) < 0.01  # Next to voices' 25..76 pitch.


def _latent_correlations(model, prosody: float, clips: int = 40) -> tuple[float, float]:
  """Over clips of one speaker: corr(latent jaw gain, mean jaw opening), corr(gain, loudness)."""
  profile = speech_set.speaker_profile(0, 1)
  gains, jaw, loudness = [], [], []
  for index in range(clips):
    plan = speech_set.clip_plan(0, profile, index, latent=True, latent_prosody=prosody)
    clip = speech_set.generate_clip(model, 0, profile, plan)
    track = clip["exp"][:, model.exp_index("jaw_open")]
    frames = clip["audio"][:len(clip["audio"]) // 640 * 640].reshape(-1, 640)
    energy = 10 * np.log10((frames ** 2).mean(1) + 1e-8)  # Loudness per 25 fps frame, dB.
    gains.append(plan.latent.to_json()["jaw_gain"])
    jaw.append(track[track > 0.05].mean())
    loudness.append(energy[energy > np.percentile(energy, 30)].mean())
  return np.corrcoef(gains, jaw)[0, 1], np.corrcoef(gains, loudness)[0, 1]


@needs_espeak
def test_latent_shows_in_the_mouth_not_in_the_audio(model):
  mouth, audio = _latent_correlations(model, prosody=0.25)
  assert mouth > 0.7 and abs(audio) < 0.35, (mouth, audio)  # |r| < 0.31 is chance at n = 40.
  _, loud = _latent_correlations(model, prosody=1.0)
  assert loud > abs(audio) + 0.2, (loud, audio)  # The knob: stronger prosody, clearer in audio.


@needs_espeak
def test_latent_ground_truth_is_written(tmp_path, model):
  profile = speech_set.speaker_profile(0, 0)
  plan = speech_set.clip_plan(0, profile, 0, latent=clip_latent.ClipLatent("sad", 0.8))
  plain = speech_set.clip_plan(0, profile, 0)
  assert plan.text == plain.text and plan.voice.pitch < plain.voice.pitch  # Sad: lower, slower.
  clip = speech_set.generate_clip(model, 0, profile, plan)
  speech_set.write_clip(tmp_path / "c", clip, plan, model.exp_names)
  with np.load(tmp_path / "c" / speech_layout.COEFFS) as coeffs:
    np.testing.assert_array_equal(coeffs["clip_latent"], np.float32([0, 0, 1, 0, 0.8]))
  assert json.loads((tmp_path / "c" / "meta.json").read_text())["latent"]["mode"] == "sad"


def _mouth_images(model, mouths, jaw: float):
  identity = speech_set.speaker_identity(model, 0, speech_set.speaker_profile(0, 0))
  scene = scene_lib.sample_scene(np.random.default_rng(0))
  exp = np.zeros(model.n_exp, np.float32)
  exp[model.exp_index("jaw_open")] = jaw
  return [renderer_lib.FaceRenderer(model, dataclasses.replace(identity, mouth=m), scene, 96)
          .render([0, 0, 0, 0, 0, 1.0], exp).image.astype(np.float32) for m in mouths]


def test_mouth_interior_only_when_open_and_per_speaker(model):
  mouths = [None] + [appearance_lib.sample_mouth_interior(np.random.default_rng(s)) for s in (1, 2)]
  closed = _mouth_images(model, mouths, 0.0)
  opened = _mouth_images(model, mouths, 1.0)
  for image in closed[1:]:
    np.testing.assert_array_equal(image, closed[0])  # Hidden behind closed lips.
  generic, first, second = opened
  for a, b in ((generic, first), (first, second), (generic, second)):
    diff = np.abs(a - b).max(-1)
    assert (diff > 20).sum() >= 10, (diff > 20).sum()  # Visible detail that differs.
    rows = np.nonzero(diff.max(1) > 20)[0]
    assert 0.5 * 96 < rows.min() and rows.max() < 0.85 * 96  # Only in the mouth.
