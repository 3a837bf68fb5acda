"""Sync-C / Sync-D (a.k.a. LSE-C / LSE-D) with SyncNet (Chung & Zisserman 2016), ported to Flax.

The network is syncnet_python's `S` (the `syncnet_v2.model` weights used by the Wav2Lip, SadTalker and
MemFace evaluations): an audio stream on 13 x 20 MFCC windows (0.2 s at 100 Hz) and a lip stream on
5 stacked 224 x 224 BGR frames (values 0-255, no normalisation), each ending in a 1024-d embedding.
Scoring follows `SyncNetInstance.evaluate`:
  * MFCC: python_speech_features' defaults (25 ms frames every 10 ms, 26 mel filters, 512-point FFT,
    pre-emphasis 0.97, lifter 22, c0 = log frame energy) on the 16 kHz waveform in int16 units;
  * video frame i (i < T - 5) -> embedding of frames i..i+4; audio embedding of MFCC steps 4i..4i+19;
  * distances from each video embedding to the audio embeddings at offsets -vshift..vshift (audio
    padded with zero embeddings), averaged over frames;
  * Sync-D = the minimum mean distance, Sync-C = median(mean distances) - minimum, AV offset =
    vshift - argmin (Wav2Lip's scripts use vshift 15, the syncnet demo 10).
The original pipeline first detects and tracks faces (S3FD); talking-head outputs are already face
crops, so `SyncScorer.score` / `sync_metrics` take face frames and only resize them to 224 x 224.

The weights (`syncnet_v2.model` from robots.ox.ac.uk) are not redistributed: convert them once with
`python -m talkingmem.tools.convert_syncnet` (or pass the .model file itself). Without them
`sync_metrics` reports None with the reason.
"""
from __future__ import annotations

import functools
import math
import os
import pathlib
from typing import Any

import cv2
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.user_errors import UserInputError
from talkingmem.metrics import syncnet_weights

SAMPLE_RATE = 16000
FPS = 25
LIP_FRAMES = 5
MFCC_STEPS = 20  # 0.2 s of 100 Hz MFCC per 5-frame video window.
MFCC_PER_FRAME = 4
IMAGE_SIZE = 224
EMBED_DIM = 1024
DEFAULT_VSHIFT = 15
BN_EPS = 1e-5
PAIRWISE_EPS = 1e-6  # torch.nn.functional.pairwise_distance's eps: ||a - b + eps||.

# (torch index in the Sequential, features, kernel, strides, padding) of every convolution, and the max
# pools (after conv index: window, strides, padding), exactly as syncnet_python's SyncNetModel.S.
AUDIO_CONVS = ((0, 64, (3, 3), (1, 1), 1), (4, 192, (3, 3), (1, 1), 1), (8, 384, (3, 3), (1, 1), 1),
               (11, 256, (3, 3), (1, 1), 1), (14, 256, (3, 3), (1, 1), 1), (18, 512, (5, 4), (1, 1), 0))
AUDIO_POOLS = {0: ((1, 1), (1, 1), 0), 4: ((3, 3), (1, 2), 0), 14: ((3, 3), (2, 2), 0)}
LIP_CONVS = ((0, 96, (5, 7, 7), (1, 2, 2), (0, 0, 0)), (4, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)),
             (8, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)), (11, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
             (14, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)), (18, 512, (1, 6, 6), (1, 1, 1), (0, 0, 0)))
LIP_POOLS = {0: ((1, 3, 3), (1, 2, 2), (0, 0, 0)), 4: ((1, 3, 3), (1, 2, 2), (0, 1, 1)),
             14: ((1, 3, 3), (1, 2, 2), (0, 0, 0))}
FC_HIDDEN = 512


class SyncNetWeightsError(UserInputError):
  """A SyncNet weights file that is missing or does not fit the network."""


# --------------------------------------------------------------------------------------------------
# MFCC (python_speech_features.mfcc with its defaults, in NumPy).


def _hz_to_mel(hz):
  return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def _mel_to_hz(mel):
  return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=4)
def _mel_filterbank(num_filters: int, nfft: int, sample_rate: int) -> np.ndarray:
  """(num_filters, nfft // 2 + 1) triangles on FFT bins floor((nfft + 1) * hz / rate)."""
  mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), num_filters + 2)
  bins = np.floor((nfft + 1) * _mel_to_hz(mels) / sample_rate)
  bank = np.zeros((num_filters, nfft // 2 + 1))
  for j in range(num_filters):
    lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
    for i in range(int(lo), int(mid)):
      bank[j, i] = (i - lo) / (mid - lo)
    for i in range(int(mid), int(hi)):
      bank[j, i] = (hi - i) / (hi - mid)
  return bank


def mfcc(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, num_ceps: int = 13, num_filters: int = 26,
         nfft: int = 512, preemph: float = 0.97, lifter: int = 22) -> np.ndarray:
  """(frames, num_ceps) MFCC of a 1-D signal, as python_speech_features.mfcc (25 ms / 10 ms)."""
  from scipy.fft import dct  # pylint: disable=g-import-not-at-top
  x = np.asarray(wave, np.float64)
  x = np.append(x[0], x[1:] - preemph * x[:-1])
  frame_len, step = int(round(0.025 * sample_rate)), int(round(0.01 * sample_rate))
  count = 1 if len(x) <= frame_len else 1 + math.ceil((len(x) - frame_len) / step)
  x = np.pad(x, (0, (count - 1) * step + frame_len - len(x)))
  frames = x[np.arange(frame_len)[None] + step * np.arange(count)[:, None]]
  power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
  eps = np.finfo(float).eps
  energy = power.sum(1)
  energy = np.where(energy == 0, eps, energy)
  bands = power @ _mel_filterbank(num_filters, nfft, sample_rate).T
  bands = np.where(bands == 0, eps, bands)
  ceps = dct(np.log(bands), type=2, axis=1, norm="ortho")[:, :num_ceps]
  ceps *= 1 + (lifter / 2.0) * np.sin(np.pi * np.arange(num_ceps) / lifter)
  ceps[:, 0] = np.log(energy)
  return ceps


def to_int16_units(wave: np.ndarray) -> np.ndarray:
  """Float audio in [-1, 1] -> float64 in int16 units (what SyncNet's wavfile.read gave it)."""
  x = np.asarray(wave)
  if np.issubdtype(x.dtype, np.integer):
    return x.astype(np.float64)
  return np.round(np.clip(x.astype(np.float64), -1.0, 1.0) * 32767.0)


# --------------------------------------------------------------------------------------------------
# The network.


class SyncNet(nn.Module):
  """syncnet_python's S. Layer names are the torch Sequential's (`netcnnaud_0` = netcnnaud.0)."""
  embed_dim: int = EMBED_DIM

  def _fc(self, x: jax.Array, prefix: str) -> jax.Array:
    x = nn.Dense(FC_HIDDEN, name=f"{prefix}_0")(x)
    x = nn.relu(nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name=f"{prefix}_1")(x))
    return nn.Dense(self.embed_dim, name=f"{prefix}_3")(x)

  @nn.compact
  def __call__(self, mfcc_windows: jax.Array | None, frames: jax.Array | None
               ) -> tuple[jax.Array | None, jax.Array | None]:
    """Either stream may be None (one compact method holds both, so layer names stay flat)."""
    audio = None if mfcc_windows is None else self._audio(mfcc_windows)
    return audio, None if frames is None else self._lip(frames)

  def audio(self, mfcc_windows: jax.Array) -> jax.Array:
    """(N, 13, 20) MFCC windows (coefficients x time) -> (N, embed_dim)."""
    return self(mfcc_windows, None)[0]

  def lip(self, frames: jax.Array) -> jax.Array:
    """(N, 5, 224, 224, 3) BGR 0-255 -> (N, embed_dim)."""
    return self(None, frames)[1]

  def _audio(self, mfcc_windows: jax.Array) -> jax.Array:
    x = mfcc_windows[..., None]
    for index, features, kernel, strides, pad in AUDIO_CONVS:
      x = nn.Conv(features, kernel, strides, padding=[(pad, pad)] * 2, name=f"netcnnaud_{index}")(x)
      x = nn.relu(nn.BatchNorm(use_running_average=True, epsilon=BN_EPS,
                               name=f"netcnnaud_{index + 1}")(x))
      if index in AUDIO_POOLS:
        window, pool_strides, _ = AUDIO_POOLS[index]
        x = nn.max_pool(x, window, pool_strides)
    return self._fc(x.reshape(x.shape[0], -1), "netfcaud")

  def _lip(self, frames: jax.Array) -> jax.Array:
    x = frames
    for index, features, kernel, strides, pad in LIP_CONVS:
      x = nn.Conv(features, kernel, strides, padding=[(p, p) for p in pad], name=f"netcnnlip_{index}")(x)
      x = nn.relu(nn.BatchNorm(use_running_average=True, epsilon=BN_EPS,
                               name=f"netcnnlip_{index + 1}")(x))
      if index in LIP_POOLS:
        window, pool_strides, pool_pad = LIP_POOLS[index]
        x = nn.max_pool(x, window, pool_strides, padding=[(p, p) for p in pool_pad])
    return self._fc(x.reshape(x.shape[0], -1), "netfclip")


def variable_shapes(embed_dim: int = EMBED_DIM) -> dict:
  """The Flax variable tree's shapes (no compilation)."""
  model = SyncNet(embed_dim)
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 13, MFCC_STEPS)),
                        jnp.zeros((1, LIP_FRAMES, IMAGE_SIZE, IMAGE_SIZE, 3)))


def load_variables(path: str | os.PathLike) -> dict:
  """SyncNet variables from a converted `.npz` or the original `syncnet_v2.model` (torch file)."""
  from flax.traverse_util import unflatten_dict  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  if not path.is_file():
    raise SyncNetWeightsError(f"SyncNet weights {path} not found (syncnet_v2.model from "
                              "syncnet_python's download_model.sh, or its converted .npz)")
  if path.suffix == ".npz":
    with np.load(path) as data:
      flat = {tuple(k.split("/")): data[k] for k in data.files}
  else:
    flat = syncnet_weights.flat_variables(syncnet_weights.read_state_dict(path))
  variables = unflatten_dict(flat)
  want = {k: v.shape for k, v in _flat(variable_shapes()).items()}
  have = {k: tuple(np.shape(v)) for k, v in flat.items()}
  if want != have:
    diff = sorted("/".join(k) for k in set(want) ^ set(have))
    diff += sorted(f"{'/'.join(k)} {have[k]} vs {want[k]}" for k in set(want) & set(have)
                   if have[k] != want[k])
    raise SyncNetWeightsError(f"{path} does not fit SyncNet: " + ", ".join(diff[:8]))
  return jax.tree.map(jnp.asarray, variables)


def _flat(tree: Any) -> dict:
  from flax.traverse_util import flatten_dict  # pylint: disable=g-import-not-at-top
  return flatten_dict(tree)


# --------------------------------------------------------------------------------------------------
# Scoring.


def offset_distances(video_emb: np.ndarray, audio_emb: np.ndarray, vshift: int = DEFAULT_VSHIFT
                     ) -> np.ndarray:
  """(T, 2 vshift + 1): distance of video embedding t to audio embedding t + k - vshift.

  Audio embeddings outside [0, T) are zero vectors (syncnet_python pads them so), distances are
  torch's pairwise_distance ||v - a + 1e-6||.
  """
  video_emb, audio_emb = np.asarray(video_emb, np.float64), np.asarray(audio_emb, np.float64)
  padded = np.pad(audio_emb, ((vshift, vshift), (0, 0)))
  shifted = np.stack([padded[k:k + len(video_emb)] for k in range(2 * vshift + 1)], 1)
  return np.linalg.norm(video_emb[:, None] - shifted + PAIRWISE_EPS, axis=-1)


def scores_from_distances(dists: np.ndarray, vshift: int | None = None) -> dict[str, float]:
  """Sync-D (min over offsets of the mean distance), Sync-C (median - min) and the AV offset."""
  dists = np.asarray(dists, np.float64)
  vshift = (dists.shape[1] - 1) // 2 if vshift is None else vshift
  mean = dists.mean(0)
  best = int(np.argmin(mean))
  # torch.median returns the lower middle value for an even count.
  median = float(np.sort(mean)[(len(mean) - 1) // 2])
  return {"sync_d": float(mean[best]), "sync_c": median - float(mean[best]), "offset": vshift - best}


def _resize_bgr(frames: np.ndarray) -> np.ndarray:
  """(T, H, W, 3) RGB uint8 or [0, 1] float -> (T, 224, 224, 3) float32 BGR in 0-255."""
  x = np.asarray(frames)
  if x.dtype != np.uint8:
    x = (np.clip(x.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  out = [cv2.resize(f, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_CUBIC if f.shape[0] < IMAGE_SIZE
                    else cv2.INTER_AREA)[..., ::-1] for f in x]
  return np.stack(out).astype(np.float32)


class SyncScorer:
  """SyncNet with loaded weights; `score(frames, wave)` gives Sync-D, Sync-C and the offset."""

  def __init__(self, weights: str | os.PathLike | dict, batch_size: int = 20):
    self.variables = load_variables(weights) if not isinstance(weights, dict) else weights
    self.batch_size = batch_size
    model = SyncNet()
    self._audio = jax.jit(lambda v, x: model.apply(v, x, method=SyncNet.audio))
    self._lip = jax.jit(lambda v, x: model.apply(v, x, method=SyncNet.lip))

  def _batched(self, fn, inputs: np.ndarray) -> np.ndarray:
    out = []
    for start in range(0, len(inputs), self.batch_size):
      chunk = inputs[start:start + self.batch_size]
      pad = self.batch_size - len(chunk)
      padded = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)]) if pad else chunk
      out.append(np.asarray(fn(self.variables, jnp.asarray(padded)))[:len(chunk)])
    return np.concatenate(out)

  def embeddings(self, frames: np.ndarray, wave: np.ndarray, sample_rate: int = SAMPLE_RATE
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(video, audio) embeddings of every 5-frame window, as SyncNetInstance.evaluate pairs them."""
    if sample_rate != SAMPLE_RATE:
      raise ValueError(f"SyncNet needs 16 kHz audio, got {sample_rate} Hz: resample first")
    ceps = mfcc(to_int16_units(wave)).T  # (13, steps)
    count = min(len(frames), len(wave) // (SAMPLE_RATE // FPS)) - LIP_FRAMES
    if count < 1:
      raise ValueError(f"SyncNet needs more than {LIP_FRAMES} frames of video and audio, got "
                       f"{len(frames)} frames and {len(wave) / SAMPLE_RATE:.2f} s")
    images = _resize_bgr(frames[:count + LIP_FRAMES - 1])
    lips = np.stack([images[i:i + LIP_FRAMES] for i in range(count)])
    ceps = np.pad(ceps, ((0, 0), (0, max(0, MFCC_PER_FRAME * count + MFCC_STEPS - ceps.shape[1]))))
    windows = np.stack([ceps[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + MFCC_STEPS] for i in range(count)])
    return (self._batched(self._lip, lips.astype(np.float32)),
            self._batched(self._audio, windows.astype(np.float32)))

  def score(self, frames: np.ndarray, wave: np.ndarray, sample_rate: int = SAMPLE_RATE,
            vshift: int = DEFAULT_VSHIFT) -> dict[str, float]:
    video, audio = self.embeddings(frames, wave, sample_rate)
    return scores_from_distances(offset_distances(video, audio, vshift), vshift)


def sync_metrics(frames: np.ndarray, wave: np.ndarray, weights: str | os.PathLike | None,
                 sample_rate: int = SAMPLE_RATE, vshift: int = DEFAULT_VSHIFT) -> dict[str, Any]:
  """{'sync_d', 'sync_c', 'offset'} or, without usable weights, those as None plus 'unavailable'."""
  if not weights or not pathlib.Path(weights).is_file():
    reason = ("no SyncNet weights given (--syncnet_weights=syncnet_v2.model or its .npz)" if not weights
              else f"SyncNet weights {weights} not found")
    return {"sync_d": None, "sync_c": None, "offset": None, "unavailable": reason}
  try:
    scorer = SyncScorer(weights)
  except SyncNetWeightsError as e:
    return {"sync_d": None, "sync_c": None, "offset": None, "unavailable": str(e)}
  return scorer.score(frames, wave, sample_rate, vshift)
