"""Image losses both papers train with: FOMM's anti-aliased image pyramid, the VGG19 perceptual loss
and the pixel-pyramid (L1 + SSIM) stand-in used when no VGG19 weights are given.

All functions are pure and jit-able. Images are NHWC in [0, 1].
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from talkingmem.metrics.image import gaussian_window, ssim
from talkingmem.nn import vgg
from talkingmem.nn.antialias import antialias_downsample

DEFAULT_SCALES = (1, 0.5, 0.25, 0.125)
Pyramid = Mapping[float, jax.Array]
_VGG = vgg.VGG19()


# ------------------------------------------------------------------------------------ pyramids


def image_pyramid(x: jax.Array, scales: Sequence[float] = DEFAULT_SCALES) -> dict[float, jax.Array]:
  """{scale: anti-aliased downsampled x}, FOMM's ImagePyramide (scale 1 is x itself)."""
  return {s: antialias_downsample(x, float(s)) for s in scales}


def _as_pyramid(x: jax.Array | Pyramid, scales: Sequence[float]) -> Pyramid:
  """Lets callers pass a pyramid they already built (e.g. shared with the discriminator)."""
  if isinstance(x, Mapping):
    missing = [s for s in scales if s not in x]
    if missing:
      raise ValueError(f"pyramid has scales {sorted(x)}, missing {missing}")
    return x
  return image_pyramid(x, scales)


# ------------------------------------------------------------------------------ reconstruction


def perceptual_loss(vgg_params: Mapping[str, Any], prediction: jax.Array | Pyramid,
                    target: jax.Array | Pyramid, scales: Sequence[float] = DEFAULT_SCALES,
                    layer_weights: Sequence[float] = (10.0,) * 5) -> jax.Array:
  """sum_scales sum_layers w_l * mean|VGG_l(pred) - stopgrad(VGG_l(target))|, as FOMM/MCNet.

  vgg_params: VGG19's `params` collection (or `{"params": ...}`); treated as frozen. The target
  branch runs VGG once per scale under stop_gradient, so no backward pass is traced through it.
  """
  if len(layer_weights) != len(vgg.LAYER_NAMES):
    raise ValueError(f"need {len(vgg.LAYER_NAMES)} layer weights, got {len(layer_weights)}")
  params = vgg_params["params"] if "params" in vgg_params else vgg_params
  variables = {"params": jax.lax.stop_gradient(params)}
  pred_pyr, target_pyr = _as_pyramid(prediction, scales), _as_pyramid(target, scales)
  for s in scales:
    if min(pred_pyr[s].shape[1:3]) < vgg.MIN_SIZE:
      raise ValueError(f"scale {s} gives {pred_pyr[s].shape[1:3]} images; VGG19's relu5_1 needs "
                       f">= {vgg.MIN_SIZE} pixels per side (drop the scale or use larger frames)")
  total = jnp.zeros((), jnp.float32)
  for s in scales:
    pred_feats = _VGG.apply(variables, pred_pyr[s])
    target_feats = jax.lax.stop_gradient(_VGG.apply(variables, jax.lax.stop_gradient(target_pyr[s])))
    for w, fp, ft in zip(layer_weights, pred_feats, target_feats):
      if w:
        total = total + w * jnp.mean(jnp.abs(fp - ft))
  return total


def pixel_pyramid_loss(prediction: jax.Array | Pyramid, target: jax.Array | Pyramid,
                       scales: Sequence[float] = DEFAULT_SCALES, weight: float = 10.0) -> jax.Array:
  """weight * sum_scales (L1 + 1 - SSIM): the stand-in for the perceptual loss without VGG weights.

  Not in the official recipe; it keeps training meaningful when vgg19-dcbb9e9d.pth is unavailable.
  Scales smaller than the 11x11 SSIM window (e.g. 1/8 of 64x64) contribute their L1 term only.
  """
  pred_pyr, target_pyr = _as_pyramid(prediction, scales), _as_pyramid(target, scales)
  window = len(gaussian_window())
  total = jnp.zeros((), jnp.float32)
  for s in scales:
    p, t = pred_pyr[s], jax.lax.stop_gradient(target_pyr[s])
    total = total + jnp.mean(jnp.abs(p - t))
    if min(p.shape[1:3]) >= window:
      total = total + (1.0 - ssim(p, t, data_range=1.0))
  return weight * total
