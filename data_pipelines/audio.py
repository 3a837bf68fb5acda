"""Audio features for MemFace's audio-to-expression model, aligned to 25 fps video.

MemFace feeds a speech-recognition feature (DeepSpeech in the NVP/AD-NeRF lineage) per video frame.
Those networks are not available offline, so the default here is a weight-free log-mel spectrogram
with the same timing: 50 Hz features, two per video frame, and a window of W feature frames centred
on each video frame (the reference pipelines' DeepSpeech [N, 16, 29] layout). Precomputed features
(DeepSpeech windows, HuBERT / wav2vec frames at 50 Hz) enter through the same `load_audio_features`.

Log-mel choices (librosa-compatible, so librosa is the test reference):
  * 16 kHz mono; hop 320 samples (20 ms, 50 Hz); Hann window of 640 samples (40 ms, periodic),
    zero-padded to n_fft = 1024 (finer bins for the low mel bands, like librosa's win_length < n_fft);
  * centred frames: the signal is zero-padded by n_fft / 2 on both sides, so feature j is centred at
    t = j / 50 s and video frame f (t = f / 25 s) is aligned with feature 2f;
  * power spectrum -> 80 Slaney-scale mel bands with Slaney area normalisation (librosa's default),
    0-8 kHz -> natural log of max(mel, 1e-5) (absolute floor: no dependence on the clip's loudest frame).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

VIDEO_FPS = 25
FEATURE_RATE = 50  # Hz; two feature frames per video frame.


@dataclasses.dataclass(frozen=True)
class MelConfig:
  sample_rate: int = 16000
  n_fft: int = 1024
  win_length: int = 640
  hop_length: int = 320
  n_mels: int = 80
  fmin: float = 0.0
  fmax: float = 8000.0
  log_floor: float = 1e-5


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
  """Slaney's Auditory Toolbox scale: linear below 1 kHz, logarithmic above."""
  hz = np.asarray(hz, np.float64)
  lin = hz / (200.0 / 3)
  log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
  return np.where(hz >= 1000.0, log, lin)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
  mel = np.asarray(mel, np.float64)
  lin = mel * (200.0 / 3)
  log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
  return np.where(mel >= 15.0, log, lin)


def mel_filterbank(config: MelConfig = MelConfig()) -> np.ndarray:
  """(n_fft // 2 + 1, n_mels) triangular Slaney-normalised filters (as librosa.filters.mel)."""
  freqs = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
  edges = _mel_to_hz(np.linspace(_hz_to_mel(config.fmin), _hz_to_mel(config.fmax), config.n_mels + 2))
  widths = np.diff(edges)
  ramps = edges[:, None] - freqs[None, :]
  lower = -ramps[:-2] / widths[:-1, None]
  upper = ramps[2:] / widths[1:, None]
  weights = np.maximum(0.0, np.minimum(lower, upper))
  weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # Equal area per band.
  return weights.T.astype(np.float32)


def _window(config: MelConfig) -> np.ndarray:
  """Periodic Hann of win_length, centred in n_fft zeros."""
  n = np.arange(config.win_length)
  hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / config.win_length)
  left = (config.n_fft - config.win_length) // 2
  return np.pad(hann, (left, config.n_fft - config.win_length - left)).astype(np.float32)


def num_feature_frames(num_samples: int, config: MelConfig = MelConfig()) -> int:
  return 1 + num_samples // config.hop_length


def num_video_frames(num_samples: int, sample_rate: int = 16000, fps: int = VIDEO_FPS) -> int:
  """Video frames whose time f / fps lies inside the audio: ceil(duration * fps)."""
  return -(-num_samples * fps // sample_rate)


def log_mel_spectrogram(audio: jax.Array, config: MelConfig = MelConfig()) -> jax.Array:
  """(..., N) waveform at config.sample_rate -> (..., 1 + N // hop, n_mels) log-mel; jit-friendly."""
  audio = jnp.asarray(audio, jnp.float32)
  half = config.n_fft // 2
  padded = jnp.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(half, half)])
  frames = num_feature_frames(audio.shape[-1], config)
  index = (np.arange(frames)[:, None] * config.hop_length + np.arange(config.n_fft)[None, :])
  framed = padded[..., index] * _window(config)  # (..., F, n_fft)
  spectrum = jnp.fft.rfft(framed, n=config.n_fft, axis=-1)
  power = jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2
  mel = jnp.matmul(power, mel_filterbank(config), precision=jax.lax.Precision.HIGHEST)
  return jnp.log(jnp.maximum(mel, config.log_floor))


def window_indices(num_frames: int, num_features: int, window: int = 16,
                   ratio: int = FEATURE_RATE // VIDEO_FPS) -> tuple[np.ndarray, np.ndarray]:
  """Feature indices (num_frames, window) centred on each video frame, and which are in range.

  Video frame f covers features [ratio * f - window // 2, ratio * f + window - window // 2), as the
  DeepSpeech pipelines (pad 8, windows of 16, stride 2). Out-of-range indices are clipped to the edge.
  """
  idx = ratio * np.arange(num_frames)[:, None] + np.arange(window)[None, :] - window // 2
  valid = (idx >= 0) & (idx < num_features)
  return np.clip(idx, 0, num_features - 1), valid


def frame_windows(features: jax.Array | np.ndarray, num_frames: int | None = None, window: int = 16,
                  ratio: int = FEATURE_RATE // VIDEO_FPS, pad: str = "edge"):
  """(T_feat, D) features at `ratio` x video rate -> (num_frames, window, D) per-frame windows.

  Works on NumPy and JAX arrays alike (static gather). `pad` is 'edge' (repeat the first/last
  feature) or 'zero'. `num_frames` defaults to ceil(T_feat / ratio).
  """
  num_features = features.shape[0]
  if num_frames is None:
    num_frames = -(-num_features // ratio)
  idx, valid = window_indices(num_frames, num_features, window, ratio)
  out = features[idx]
  if pad == "zero":
    out = out * valid[..., None].astype(out.dtype)
  elif pad != "edge":
    raise ValueError(f"pad must be 'edge' or 'zero', got {pad!r}")
  return out


_log_mel_jit = jax.jit(log_mel_spectrogram, static_argnums=1)


def log_mel_features(wave: np.ndarray, config: MelConfig = MelConfig(),
                     bucket: int | None = None) -> np.ndarray:
  """(N,) waveform -> (1 + N // hop, n_mels) float32 NumPy log-mel, compiled once per bucket.

  The waveform is zero-padded to a whole number of `bucket` samples (default one second) before the
  jitted `log_mel_spectrogram`, so clips of any length share a few compilations; the kept frames
  are unchanged (their windows already saw zeros past the end).
  """
  wave = np.asarray(wave, np.float32)
  padded = np.pad(wave, (0, -len(wave) % (bucket or config.sample_rate)))
  feats = np.asarray(_log_mel_jit(padded, config))
  return feats[:num_feature_frames(len(wave), config)]

FRAME_KINDS = ("hubert", "wav2vec", "frames")  # [T, D] at 50 Hz.
WINDOW_KINDS = ("deepspeech",)  # [N, W, D], already one window per video frame.
WAVE_KINDS = ("wav", "mel")  # Waveform (array at 16 kHz, .wav or .npy) -> log-mel.

Source = Union[str, os.PathLike, np.ndarray]


def load_audio_features(source: Source, kind: str, num_frames: int | None = None,
                        window: int = 16, mel_config: MelConfig = MelConfig(),
                        sample_rate: int | None = None) -> np.ndarray:
  """Per-video-frame audio windows (T_video, W, D) float32 from any supported feature source.

  Args:
    source: a `.npy` / `.wav` path or an array.
    kind: 'deepspeech' ([N, W, D] windows, returned as is), 'hubert' / 'wav2vec' / 'frames'
      ([T, D] at 50 Hz), or 'wav' / 'mel' (a mono waveform, log-mel computed here).
    num_frames: video frames wanted; windows are cropped, or padded by repeating the edge frame.
      Defaults to what the source covers: ceil(duration * 25) for waveforms (`num_video_frames`),
      ceil(T / 2) for 50 Hz frames, N for DeepSpeech windows.
    window: W, feature frames per video frame (ignored for 'deepspeech').
    mel_config: log-mel settings for waveform kinds.
    sample_rate: rate of a waveform array (default mel_config.sample_rate); files carry their own.
  """
  kind = kind.lower()
  if kind in WAVE_KINDS:
    wave, rate = _load_wave(source, sample_rate or mel_config.sample_rate)
    if rate != mel_config.sample_rate:
      from scipy import signal  # Local: only waveform inputs at another rate need it.
      g = np.gcd(rate, mel_config.sample_rate)
      wave = signal.resample_poly(wave, mel_config.sample_rate // g, rate // g)
    feats = log_mel_features(wave, mel_config)
    if num_frames is None:
      num_frames = num_video_frames(len(wave), mel_config.sample_rate)
    return frame_windows(feats, num_frames, window).astype(np.float32)
  array = np.load(source) if not isinstance(source, np.ndarray) else source
  array = np.asarray(array, np.float32)
  if kind in WINDOW_KINDS:
    if array.ndim != 3:
      raise ValueError(f"{kind} features must be [N, W, D], got {array.shape}")
    if num_frames is not None:
      array = array[np.clip(np.arange(num_frames), 0, len(array) - 1)]
    return array
  if kind in FRAME_KINDS:
    if array.ndim == 3 and array.shape[0] == 1:  # [1, T, D] as saved by some HuBERT scripts.
      array = array[0]
    if array.ndim != 2:
      raise ValueError(f"{kind} features must be [T, D] at 50 Hz, got {array.shape}")
    return frame_windows(array, num_frames, window)
  raise ValueError(f"unknown feature kind {kind!r}; expected one of "
                   f"{WINDOW_KINDS + FRAME_KINDS + WAVE_KINDS}")


def _load_wave(source: Source, default_rate: int) -> tuple[np.ndarray, int]:
  """Mono float32 waveform and its rate from an array, a .npy or a .wav file."""
  if isinstance(source, np.ndarray):
    wave, rate = source, default_rate
  elif str(source).endswith(".npy"):
    wave, rate = np.load(source), default_rate
  else:
    from scipy.io import wavfile  # Local: only file inputs need it.
    rate, wave = wavfile.read(source)
    if np.issubdtype(wave.dtype, np.integer):
      wave = wave / float(np.iinfo(wave.dtype).max + 1)
  wave = np.asarray(wave, np.float32)
  if wave.ndim == 2:  # (N, channels) -> mono.
    wave = wave.mean(-1)
  return wave, int(rate)
