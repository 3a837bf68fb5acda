"""The closed-form VGG19 weights of the official training fixture (ImageNet weights are offline-only).

He-uniform weights with an integer hash (murmur3's fmix32) as the random source, bit-reproducible in
float32; the formula is in shared/fixtures/mcnet_official_train/README.md ("VGG19 weights").
"""
from __future__ import annotations

import numpy as np

from talkingmem.nn import vgg

_GOLDEN = 0x9E3779B9
_MASK = 0xFFFFFFFF


def fmix32(x: np.ndarray) -> np.ndarray:
  """murmur3's 32-bit finaliser on uint64 arrays holding 32-bit values."""
  x = x ^ (x >> np.uint64(16))
  x = (x * np.uint64(0x85EBCA6B)) & np.uint64(_MASK)
  x = x ^ (x >> np.uint64(13))
  x = (x * np.uint64(0xC2B2AE35)) & np.uint64(_MASK)
  return x ^ (x >> np.uint64(16))


def hash_uniform(n: np.ndarray, stream: int) -> np.ndarray:
  """u(n, s) = fmix32((n + s * golden) mod 2^32) / 2^32 in [0, 1), exact in float64."""
  x = (n.astype(np.uint64) + np.uint64((stream * _GOLDEN) & _MASK)) & np.uint64(_MASK)
  return fmix32(x).astype(np.float64) / 2.0 ** 32


def hash_vgg19_state_dict() -> dict[str, np.ndarray]:
  """torchvision-named (`features.N.weight`, OIHW) float32 weights of the 13 convs up to relu5_1."""
  state = {}
  for k, (index, cin, cout) in enumerate(vgg.CONVS):
    flat = np.arange(cout * cin * 9, dtype=np.uint64)
    weight = np.sqrt(6.0 / (9 * cin)) * (2.0 * hash_uniform(flat, 2 * k + 1) - 1.0)
    bias = 0.01 * (2.0 * hash_uniform(np.arange(cout, dtype=np.uint64), 2 * k + 2) - 1.0)
    state[f"features.{index}.weight"] = weight.astype(np.float32).reshape(cout, cin, 3, 3)
    state[f"features.{index}.bias"] = bias.astype(np.float32)
  return state
