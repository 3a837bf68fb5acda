"""Pair augmentation of the first-order-model trainers, in NumPy.

FOMM / MCNet augment a (source, driving) pair as one clip: a horizontal flip,
a time flip (swapping source and driving) and a colour jitter whose random
parameters are drawn once and applied to both frames, so the pair stays
consistent (only the motion between the frames differs).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Probabilities and jitter strengths (FOMM `augmentation_params`)."""
  horizontal_flip: bool = True
  time_flip: bool = True
  brightness: float = 0.1
  contrast: float = 0.1
  saturation: float = 0.1
  hue: float = 0.1


NO_AUGMENT = AugmentConfig(False, False, 0.0, 0.0, 0.0, 0.0)

def _gray(frames: np.ndarray) -> np.ndarray:
  """(T, H, W, 1) ITU-R 601 luma, as torchvision's rgb_to_grayscale."""
  return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])[..., None]


# The adjusters work in place on float32 frames they own (apply_params copies).


def adjust_brightness(frames: np.ndarray, factor: float) -> np.ndarray:
  frames *= factor
  return np.clip(frames, 0.0, 1.0, out=frames)


def adjust_contrast(frames: np.ndarray, factor: float) -> np.ndarray:
  """Blends each frame with its own mean gray level (torchvision semantics)."""
  mean = _gray(frames).mean(axis=(-3, -2, -1), keepdims=True)
  frames -= mean
  frames *= factor
  frames += mean
  return np.clip(frames, 0.0, 1.0, out=frames)


def adjust_saturation(frames: np.ndarray, factor: float) -> np.ndarray:
  gray = _gray(frames)
  frames -= gray
  frames *= factor
  frames += gray
  return np.clip(frames, 0.0, 1.0, out=frames)


def adjust_hue(frames: np.ndarray, shift: float) -> np.ndarray:
  """Rotates hue by `shift` turns (in [-0.5, 0.5])."""
  if shift == 0.0:
    return frames
  for frame in frames:
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)  # float32: H in [0, 360).
    hue = hsv[..., 0]
    hue += 360.0 * shift
    np.mod(hue, 360.0, out=hue)
    cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB, dst=frame)
  return np.clip(frames, 0.0, 1.0, out=frames)


@dataclasses.dataclass(frozen=True)
class AugmentParams:
  """One draw of the random augmentation, shared by both frames of a pair."""
  horizontal_flip: bool
  time_flip: bool
  brightness: float
  contrast: float
  saturation: float
  hue: float
  order: tuple[int, ...]


def sample_params(config: AugmentConfig, rng: np.random.Generator) -> AugmentParams:
  """Draws flips and jitter factors; always consumes the same random numbers."""
  flips = rng.random(2)
  factors = rng.uniform(-1.0, 1.0, size=4)
  order = tuple(int(i) for i in rng.permutation(4))
  return AugmentParams(
      horizontal_flip=bool(config.horizontal_flip and flips[0] < 0.5),
      time_flip=bool(config.time_flip and flips[1] < 0.5),
      brightness=1.0 + config.brightness * float(factors[0]),
      contrast=1.0 + config.contrast * float(factors[1]),
      saturation=1.0 + config.saturation * float(factors[2]),
      hue=config.hue * float(factors[3]),
      order=order)


def apply_params(frames: np.ndarray, params: AugmentParams) -> np.ndarray:
  """Applies one draw to float32 frames (T, H, W, 3) in [0, 1] (T=2: a pair)."""
  if params.time_flip:
    frames = frames[::-1]
  if params.horizontal_flip:
    frames = frames[:, :, ::-1]
  frames = np.array(frames, np.float32, order="C")  # A private copy: ops are in place.
  ops = (
      lambda x: x if params.brightness == 1.0 else adjust_brightness(x, params.brightness),
      lambda x: x if params.contrast == 1.0 else adjust_contrast(x, params.contrast),
      lambda x: x if params.saturation == 1.0 else adjust_saturation(x, params.saturation),
      lambda x: adjust_hue(x, params.hue),
  )
  for i in params.order:  # Random order, like torchvision's ColorJitter.
    frames = ops[i](frames)
  return frames


def augment(frames: np.ndarray, config: AugmentConfig,
            rng: np.random.Generator) -> np.ndarray:
  """Augments float32 frames (T, H, W, 3) in [0, 1] as a single clip."""
  return apply_params(frames, sample_params(config, rng))
