"""Synthetic speech dataset: layout, determinism, one-to-many mouth shapes, CLI and rendering."""
import json

import numpy as np
import pytest

from data_pipelines.speech import layout as speech_layout
from data_pipelines.synthetic.engine import face_model as face_model_lib
from data_pipelines.synthetic import speech_audio as speech
from data_pipelines.synthetic import speech_set as speech_set
from data_pipelines.synthetic import visemes

needs_espeak = pytest.mark.skipif(not speech.is_available(),
                                  reason=f"libespeak-ng missing: {speech.INSTALL_HINT}")
MOUTH = list(visemes.NAMES)


@pytest.fixture(scope="module")
def face_model():
  return face_model_lib.build_face_model()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  """2 speakers x 2 clips with 2 workers, through the library call."""
  out = tmp_path_factory.mktemp("speech") / "a"
  info = speech_set.generate_speech_dataset(out, num_speakers=2, clips_per_speaker=2, seed=3,
                                                workers=2)
  return out, info


def test_sentences_are_varied_and_seeded():
  def draw(seed):
    return [speech_set.sample_sentence(np.random.default_rng([seed, i])) for i in range(100)]

  assert draw(0) == draw(0)
  assert len(set(draw(0))) > 90
  words = {w.strip(".") for s in draw(0) for w in s.split()}
  assert len(words) > 80  # A broad phoneme inventory, not a handful of words.


def test_speakers_have_several_voices_shared_across_speakers():
  profiles = [speech_set.speaker_profile(0, i) for i in range(16)]
  assert all(2 <= len(p.voices) <= 3 for p in profiles)
  accents = [v.voice for p in profiles for v in p.voices]
  assert len(set(v.split("+")[1] for v in accents)) > 5
  assert speech_set.speaker_profile(0, 3) == profiles[3]
  styles = {p.style for p in profiles}
  assert len(styles) == 16


@needs_espeak
def test_layout_shapes_and_alignment(dataset, face_model):
  out, info = dataset
  clips = speech_layout.list_clips(out)  # Validates every file against the others.
  assert [c.key for c in clips] == ["spk000/clip0000", "spk000/clip0001", "spk001/clip0000",
                                    "spk001/clip0001"]
  assert info["num_clips"] == 4 and info["num_frames"] == sum(c.num_frames for c in clips)
  for clip in clips:
    coeffs = speech_layout.read_coeffs(clip.path / "coeffs.npz")
    t = clip.num_frames
    wave = speech_layout.read_audio(clip.path / "audio.wav")
    assert len(wave) == 640 * t  # Whole frames of audio: frame f at f / 25 s.
    assert coeffs["exp"].shape == (t, face_model.n_exp) and coeffs["pose"].shape == (t, 6)
    assert coeffs["id"].shape == (face_model.n_id,)
    vertices = np.load(clip.path / "mouth_vertices.npy")
    expected = face_model.vertices(coeffs["id"], coeffs["exp"])[:, face_model.mouth_vertex_ids]
    np.testing.assert_allclose(vertices, expected, atol=1e-5)
    meta = json.loads((clip.path / "meta.json").read_text())
    assert meta["num_frames"] == t and meta["text"]
    # Mouth moves with speech, blinks and pose move on their own.
    mouth = coeffs["exp"][:, [face_model.exp_index(n) for n in MOUTH]]
    assert mouth[:, 0].std() > 0.05  # jaw
    assert coeffs["pose"][:, 0].std() > 0
    assert coeffs["exp"][:, face_model.exp_index("blink_left")].max() > 0
  assert (out / "face_model.npz").exists() and (out / "spk000" / "speaker.json").exists()


@needs_espeak
def test_deterministic_whatever_the_workers_and_cli(dataset, tmp_path, capsys):
  """Each clip is made in a fresh process: coefficients, vertices AND audio repeat exactly."""
  out, _ = dataset
  other = tmp_path / "b"
  speech_set.main(["--out", str(other), "--num_speakers", "2", "--clips_per_speaker", "2",
                       "--seed", "3", "--workers", "1"])
  summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert summary["num_clips"] == 4 and summary["audio_seconds"] > 4
  assert {"generation_seconds", "num_frames", "num_speakers"} <= set(summary)
  for clip in speech_layout.list_clips(out):
    twin = other / clip.speaker / clip.name
    a, b = np.load(clip.path / "coeffs.npz"), np.load(twin / "coeffs.npz")
    for key in ("exp", "id", "pose"):
      np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(np.load(clip.path / "mouth_vertices.npy"),
                                  np.load(twin / "mouth_vertices.npy"))
    assert (clip.path / "audio.wav").read_bytes() == (twin / "audio.wav").read_bytes()


@needs_espeak
def test_one_to_many_same_sentence_and_voice_different_mouths(face_model):
  """Two speakers say the same sentence with the same voice: the audio (phonemes) agree, the mouth
  coefficients on the same phonemes do not."""
  text = "place blue at f two now"
  voice = speech_set.Voice("en-us+m3", pitch=50, pitch_range=50, rate=170)
  per_speaker = []
  for s in (0, 1):
    profile = speech_set.speaker_profile(0, s)
    plan = speech_set.clip_plan(0, profile, 0, text=text, voice=voice)
    plan = speech_set.dataclasses.replace(plan, lead_silence_s=0.1, tail_silence_s=0.1)
    clip = speech_set.generate_clip(face_model, 0, profile, plan)
    per_speaker.append(clip)
  names = [[p for _, _, p in c["phonemes"]] for c in per_speaker]
  assert names[0] == names[1]
  index = [face_model.exp_index(n) for n in MOUTH]

  def at_vowels(clip):
    frames = []
    for start, end, name in clip["phonemes"]:
      if visemes.viseme_of(name) in ("AA", "OO", "OH", "IY", "EH"):
        frames += [f for f in range(len(clip["exp"])) if start <= f / 25 < end]
    return clip["exp"][frames][:, index].mean(0)

  a, b = at_vowels(per_speaker[0]), at_vowels(per_speaker[1])
  assert np.abs(a - b).max() > 0.1, (a, b)
  # And the speaker's habits show: smile and asymmetry differ even with the mouth at rest.
  styles = [speech_set.speaker_profile(0, s).style for s in (0, 1)]
  assert styles[0] != styles[1]


@needs_espeak
def test_render_writes_video_with_audio(tmp_path, face_model):
  from data_pipelines import video_io
  profile = speech_set.speaker_profile(1, 0)
  plan = speech_set.clip_plan(1, profile, 0, text="bin red")
  clip = speech_set.generate_clip(face_model, 1, profile, plan, render=True, size=32)
  t = len(clip["exp"])
  assert clip["frames"].shape == (t, 32, 32, 3) and clip["frames"].dtype == np.uint8
  speech_set.write_clip(tmp_path / "spk" / "clip", clip, plan, face_model.exp_names)
  info = video_io.video_info(tmp_path / "spk" / "clip" / "video.mp4")
  assert info["frames"] == t and info["has_audio"] and info["fps"] == 25
  assert speech_layout.list_clips(tmp_path)[0].num_frames == t
