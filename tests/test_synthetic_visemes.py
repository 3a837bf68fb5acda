"""Phoneme -> mouth coefficients: articulation sanity, co-articulation, one-to-many speakers."""
import numpy as np
import pytest

from data_pipelines.synthetic import visemes

from data_pipelines.synthetic import speech_audio as speech

NAMES = visemes.NAMES
# Long, separated segments so each target is reached: pause, /A:/, pause, /m/, pause.
SEGMENTS = [(0.0, 0.2, "_"), (0.2, 0.6, "A:"), (0.6, 0.8, "_"), (0.8, 1.2, "m"), (1.2, 1.4, "_")]


def _at(track, t):
  return track[int(round(t * visemes.FPS))]


def test_shape_and_names():
  track, names = visemes.mouth_track(SEGMENTS)
  assert names == NAMES and track.dtype == np.float32
  assert track.shape == (35, len(NAMES))  # Frames at t = f / 25 < 1.4 s.
  assert visemes.mouth_track(SEGMENTS, num_frames=10)[0].shape == (10, len(NAMES))


def test_open_vowel_opens_jaw_more_than_bilabial():
  track, _ = visemes.mouth_track(SEGMENTS)
  jaw, press = NAMES.index("jaw_open"), NAMES.index("lip_press")
  vowel, bilabial = _at(track, 0.4), _at(track, 1.0)
  assert vowel[jaw] > 0.6 > 0.2 > bilabial[jaw]
  assert bilabial[press] > 0.8 > 0.1 > vowel[press]


def test_viseme_classes():
  assert visemes.viseme_of("p") == visemes.viseme_of("m") == "PBM"
  assert visemes.viseme_of("aI") == "AA" and visemes.viseme_of("u:") == "OO"
  assert visemes.viseme_of("_:") == "rest"
  assert visemes.viseme_of("@2") == "EH" and visemes.viseme_of("'i:") == "IY"
  assert visemes.viseme_of("Q!") == "EH"  # Unknown names fall back to a neutral vowel.


def test_rounding_anticipates_across_a_consonant():
  # "s" before a rounded vowel is already rounded (co-articulation), before a spread one it is not.
  rounded, _ = visemes.mouth_track([(0.0, 0.2, "_"), (0.2, 0.28, "s"), (0.28, 0.6, "u:")])
  spread, _ = visemes.mouth_track([(0.0, 0.2, "_"), (0.2, 0.28, "s"), (0.28, 0.6, "i:")])
  r = NAMES.index("lip_round")
  assert _at(rounded, 0.24)[r] > _at(spread, 0.24)[r] + 0.2


def test_same_phonemes_differ_between_speakers():
  a = visemes.SpeakerStyle(amplitude=1.2, rounding=0.7, smile=0.0, asymmetry=0.0, lead_s=0.02)
  b = visemes.SpeakerStyle(amplitude=0.8, rounding=1.3, smile=0.3, asymmetry=0.3, lead_s=0.06)
  track_a, _ = visemes.mouth_track(SEGMENTS, a)
  track_b, _ = visemes.mouth_track(SEGMENTS, b)
  vowel_a, vowel_b = _at(track_a, 0.4), _at(track_b, 0.4)
  assert np.abs(vowel_a - vowel_b).max() > 0.1  # One phoneme, two mouths.
  left, right = NAMES.index("smile_left"), NAMES.index("smile_right")
  assert vowel_b[left] > vowel_b[right] and vowel_a[left] == vowel_a[right] == 0.0
  np.testing.assert_array_equal(visemes.mouth_track(SEGMENTS, a)[0], track_a)  # Deterministic.


def test_sampled_styles_and_within_speaker_variability():
  rng = np.random.default_rng(0)
  styles = [visemes.SpeakerStyle.sample(rng) for _ in range(2)]
  tracks = [visemes.mouth_track(SEGMENTS, s, rng=np.random.default_rng(1))[0] for s in styles]
  assert np.abs(tracks[0] - tracks[1]).max() > 0.05
  noisy = visemes.SpeakerStyle(variability=0.2)
  one = visemes.mouth_track(SEGMENTS, noisy, rng=np.random.default_rng(1))[0]
  two = visemes.mouth_track(SEGMENTS, noisy, rng=np.random.default_rng(2))[0]
  assert not np.allclose(one, two)
  with pytest.raises(ValueError, match="rng"):
    visemes.mouth_track(SEGMENTS, noisy)


def test_to_components_maps_by_name():
  track, names = visemes.mouth_track(SEGMENTS, visemes.SpeakerStyle(smile=0.3))
  target = ("blink_left", "jaw_open", "lip_stretch", "lip_round")
  out = visemes.to_components(track, names, target)
  assert out.shape == (len(track), 4)
  np.testing.assert_array_equal(out[:, 0], 0.0)
  np.testing.assert_array_equal(out[:, 1], track[:, names.index("jaw_open")])
  smile = track[:, [names.index("smile_left"), names.index("smile_right")]].mean(-1)
  np.testing.assert_allclose(out[:, 2], track[:, names.index("lip_stretch")] + smile)
  plain = visemes.to_components(track, names, target, fold_smile=False)
  np.testing.assert_array_equal(plain[:, 2], track[:, names.index("lip_stretch")])


@pytest.mark.skipif(not speech.is_available(), reason=f"libespeak-ng missing: {speech.INSTALL_HINT}")
def test_track_from_synthesized_speech_moves_the_mouth():
  clip = speech.synthesize("Papa bought a map.")
  track, _ = visemes.mouth_track(clip.phonemes)
  assert len(track) == int(np.ceil(len(clip.audio) * 25 / clip.sample_rate))
  press = track[:, NAMES.index("lip_press")]
  jaw = track[:, NAMES.index("jaw_open")]
  assert press.max() > 0.8 and jaw.max() > 0.5 and jaw.std() > 0.1
