"""espeak-ng synthesis through ctypes: audio, phoneme timings, parameters, thread safety."""
import concurrent.futures
import ctypes

import numpy as np
import pytest

from data_pipelines.synthetic import speech_audio as speech

needs_espeak = pytest.mark.skipif(not speech.is_available(),
                                  reason=f"libespeak-ng missing: {speech.INSTALL_HINT}")
SENTENCE = "The quick brown fox jumps over the lazy dog."


def _names(clip):
  return [name for _, _, name in clip.phonemes]


@needs_espeak
def test_sentence_has_audio_and_covering_phonemes():
  clip = speech.synthesize(SENTENCE)
  assert clip.audio.dtype == np.float32 and clip.audio.ndim == 1
  assert clip.sample_rate == 16000
  assert 1.5 < clip.duration < 5.0
  assert np.sqrt(np.mean(clip.audio ** 2)) > 0.01 and np.abs(clip.audio).max() <= 1.0
  starts, ends, names = zip(*clip.phonemes)
  assert len(names) > 25 and {"k", "b", "f", "D"} <= set(names)
  assert starts[0] == 0.0 and ends[-1] == clip.duration
  assert all(s < e for s, e in zip(starts, ends))
  assert all(e == s for e, s in zip(ends[:-1], starts[1:]))  # Contiguous, in order.


@needs_espeak
def test_parameters_change_the_voice():
  base = speech.synthesize("Papa bought a map.")
  fast = speech.synthesize("Papa bought a map.", rate=320)
  high = speech.synthesize("Papa bought a map.", pitch=90, pitch_range=90)
  assert fast.duration < 0.8 * base.duration
  assert len(high.audio) != len(base.audio) or not np.allclose(high.audio, base.audio)
  again = speech.synthesize("Papa bought a map.")  # Settings do not leak between calls.
  assert _names(again) == _names(base) and abs(again.duration - base.duration) < 0.01


@needs_espeak
def test_voice_variants_and_bad_voice():
  female = speech.synthesize("Hello there.", voice="en-us+f3")
  assert female.phonemes and female.duration > 0.3
  with pytest.raises(ValueError, match="no voice"):
    speech.synthesize("Hello.", voice="xx-not-a-voice")


@needs_espeak
def test_concurrent_calls_are_serialised():
  texts = ["One two three.", "Four five six.", "Seven eight nine.", "Ten eleven."]
  serial = [speech.synthesize(t) for t in texts]
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    parallel = list(pool.map(speech.synthesize, texts))
  for a, b in zip(serial, parallel):  # Same text, same phonemes: no interleaved buffers.
    assert _names(a) == _names(b) and abs(a.duration - b.duration) < 0.01


def test_missing_library_error_says_how_to_install(monkeypatch):
  def no_library(name, *args, **kwargs):
    raise OSError(f"{name}: cannot open shared object file")
  monkeypatch.setattr(ctypes, "CDLL", no_library)
  with pytest.raises(speech.EspeakUnavailableError, match="apt-get install"):
    speech.load_library(None)
