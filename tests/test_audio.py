"""Log-mel features (vs librosa and a NumPy reference), 2:1 alignment, feature loading."""
import numpy as np
import pytest
from scipy.io import wavfile

from data_pipelines import audio

CONFIG = audio.MelConfig()


def _signal(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * 16000) + 123) / 16000
  y = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t)
  y = (y + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
  y[:2000] = 0.0  # Silence exercises the log floor.
  return y


def _numpy_log_mel(y: np.ndarray) -> np.ndarray:
  """Straightforward NumPy STFT -> mel -> log, independent of the JAX code path."""
  half = CONFIG.n_fft // 2
  padded = np.pad(y.astype(np.float64), (half, half))
  n = np.arange(CONFIG.win_length)
  hann = np.zeros(CONFIG.n_fft)
  left = (CONFIG.n_fft - CONFIG.win_length) // 2
  hann[left:left + CONFIG.win_length] = np.sin(np.pi * n / CONFIG.win_length) ** 2
  frames = [padded[i:i + CONFIG.n_fft] * hann
            for i in range(0, len(padded) - CONFIG.n_fft + 1, CONFIG.hop_length)]
  power = np.abs(np.fft.rfft(np.stack(frames), axis=-1)) ** 2
  return np.log(np.maximum(power @ audio.mel_filterbank(CONFIG).astype(np.float64), 1e-5))


def test_log_mel_matches_numpy_reference():
  y = _signal()
  out = np.asarray(audio.log_mel_spectrogram(y))
  ref = _numpy_log_mel(y)
  assert out.shape == ref.shape == (audio.num_feature_frames(len(y)), 80)
  np.testing.assert_allclose(out, ref, atol=2e-4)


def test_log_mel_matches_librosa():
  librosa = pytest.importorskip("librosa")
  fb = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0)
  np.testing.assert_allclose(audio.mel_filterbank(CONFIG), fb.T, atol=1e-7)
  y = _signal(seconds=1.3, seed=1)
  mel = librosa.feature.melspectrogram(
      y=y, sr=16000, n_fft=1024, hop_length=320, win_length=640, window="hann", center=True,
      pad_mode="constant", power=2.0, n_mels=80, fmin=0.0, fmax=8000.0)
  ref = np.log(np.maximum(mel, 1e-5)).T
  np.testing.assert_allclose(np.asarray(audio.log_mel_spectrogram(y)), ref, atol=2e-4)


def test_filterbank_is_area_normalised_and_ordered():
  fb = audio.mel_filterbank(CONFIG)
  assert fb.shape == (513, 80) and fb.min() >= 0.0
  peaks = fb.argmax(0)
  assert np.all(np.diff(peaks) >= 0)
  bin_hz = 16000 / 1024
  wide = (fb > 0).sum(0) > 8  # Coarse sampling makes narrow low bands inexact.
  np.testing.assert_allclose(fb[:, wide].sum(0) * bin_hz, 1.0, rtol=0.05)


def test_batched_and_jitted_equal_single():
  import jax
  batch = np.stack([_signal(0.5, 0), _signal(0.5, 1)])
  out = jax.jit(audio.log_mel_spectrogram)(batch)
  np.testing.assert_allclose(out[1], audio.log_mel_spectrogram(batch[1]), atol=1e-5)


def test_windows_are_centred_two_features_per_video_frame():
  features = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
  windows = audio.frame_windows(features, window=16)
  assert windows.shape == (50, 16, 3)
  for f in (4, 20, 45):  # Interior frames: features [2f - 8, 2f + 8).
    np.testing.assert_array_equal(windows[f, :, 0], np.arange(2 * f - 8, 2 * f + 8))
  np.testing.assert_array_equal(windows[0, :8, 0], 0.0)  # Edge padding repeats feature 0 ...
  np.testing.assert_array_equal(windows[49, -1, 0], 99.0)  # ... and the last feature.
  zero = audio.frame_windows(features, window=16, pad="zero")
  np.testing.assert_array_equal(zero[0, :8], 0.0)
  np.testing.assert_array_equal(zero[0, 8:, 0], np.arange(8))


def test_mel_frames_line_up_with_video_time():
  # A click at video frame 10 (t = 0.4 s) peaks in the centre of frame 10's window.
  y = np.zeros(16000, np.float32)
  y[int(0.4 * 16000)] = 1.0
  windows = audio.load_audio_features(y, "wav")
  assert windows.shape == (25, 16, 80)
  energy = windows[10].mean(-1)
  assert energy.argmax() == 8  # Index W // 2 is feature 2f.


def test_load_precomputed_and_wave_sources(tmp_path):
  ds = np.random.default_rng(0).standard_normal((30, 16, 29)).astype(np.float32)
  np.save(tmp_path / "aud.npy", ds)
  np.testing.assert_array_equal(audio.load_audio_features(tmp_path / "aud.npy", "deepspeech"), ds)
  longer = audio.load_audio_features(ds, "deepspeech", num_frames=32)
  np.testing.assert_array_equal(longer[30:], ds[[29, 29]])

  hubert = np.random.default_rng(1).standard_normal((1, 99, 12)).astype(np.float32)
  out = audio.load_audio_features(hubert, "hubert", num_frames=50, window=8)
  assert out.shape == (50, 8, 12)
  np.testing.assert_array_equal(out[10], hubert[0, 16:24])

  y = _signal(1.0)
  wavfile.write(tmp_path / "a.wav", 16000, (y * 32767).astype(np.int16))
  from_file = audio.load_audio_features(tmp_path / "a.wav", "wav")
  np.testing.assert_allclose(from_file, audio.load_audio_features(y, "wav"), atol=5e-2)
  wavfile.write(tmp_path / "b.wav", 32000, np.repeat(y, 2))
  assert audio.load_audio_features(tmp_path / "b.wav", "wav").shape == from_file.shape
  with pytest.raises(ValueError, match="unknown feature kind"):
    audio.load_audio_features(y, "mfcc")
