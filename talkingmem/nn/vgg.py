"""VGG19 feature extractor for the FOMM/MCNet perceptual loss (torchvision `vgg19().features`).

Returns relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1 (torchvision slices [0:2], [2:7], [7:12],
[12:21], [21:30]); only the 13 convolutions up to `features.28` are needed. Inputs are NHWC images
in [0, 1], normalised with the ImageNet mean/std inside, as the official `Vgg19` module does.

Weights are never downloaded: convert torchvision's `vgg19-dcbb9e9d.pth` with
`python -m talkingmem.tools.convert_vgg19` or pass the `.pth` to `load_vgg19_params` directly.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any, Mapping

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkingmem import torch_io

WEIGHTS_FILE = "vgg19-dcbb9e9d.pth"
WEIGHTS_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
LAYER_NAMES = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# The smallest input side for which relu5_1 (after four 2x2 max-pools) is not empty.
MIN_SIZE = 16

# Layer program over torchvision `features` indices: ("conv", index, in, out), "pool" or "tap".
# Every conv is 3x3, stride 1, padding 1, followed by ReLU.
_PROGRAM: tuple[Any, ...] = (
    ("conv", 0, 3, 64), "tap",
    ("conv", 2, 64, 64), "pool", ("conv", 5, 64, 128), "tap",
    ("conv", 7, 128, 128), "pool", ("conv", 10, 128, 256), "tap",
    ("conv", 12, 256, 256), ("conv", 14, 256, 256), ("conv", 16, 256, 256), "pool",
    ("conv", 19, 256, 512), "tap",
    ("conv", 21, 512, 512), ("conv", 23, 512, 512), ("conv", 25, 512, 512), "pool",
    ("conv", 28, 512, 512), "tap",
)
CONVS: tuple[tuple[int, int, int], ...] = tuple(op[1:] for op in _PROGRAM if op[0] == "conv")


def param_name(index: int) -> str:
  """Our module name for torchvision's `features.{index}` conv."""
  return f"features_{index}"


class VGG19(nn.Module):
  """torchvision VGG19 `features[:30]`; returns the five relu*_1 activations (NHWC)."""
  precision: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> list[jax.Array]:
    x = (x - jnp.asarray(IMAGENET_MEAN, x.dtype)) / jnp.asarray(IMAGENET_STD, x.dtype)
    taps = []
    for op in _PROGRAM:
      if op == "tap":
        taps.append(x)
      elif op == "pool":  # MaxPool2d(2, 2), floor mode.
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
      else:
        x = nn.relu(nn.Conv(op[3], (3, 3), padding=((1, 1), (1, 1)), precision=self.precision,
                            name=param_name(op[1]))(x))
    return taps


def convert_vgg19(state_dict: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
  """torchvision `features.N.{weight,bias}` (OIHW) -> VGG19 params (HWIO).

  `classifier.*` and the convs after `features.28` are ignored. Raises ValueError naming every
  missing key and every wrong shape.
  """
  params, problems = {}, []
  for idx, cin, cout in CONVS:
    w_key, b_key = f"features.{idx}.weight", f"features.{idx}.bias"
    missing = [k for k in (w_key, b_key) if k not in state_dict]
    if missing:
      problems.extend(f"missing {k}" for k in missing)
      continue
    w = np.asarray(state_dict[w_key], np.float32)
    b = np.asarray(state_dict[b_key], np.float32)
    if w.shape != (cout, cin, 3, 3) or b.shape != (cout,):
      problems.append(f"{w_key}/{b_key}: shapes {w.shape}/{b.shape}, want {(cout, cin, 3, 3)}/{(cout,)}")
      continue
    params[param_name(idx)] = {"kernel": w.transpose(2, 3, 1, 0), "bias": b}
  if problems:
    raise ValueError("not a torchvision VGG19 state dict: " + "; ".join(problems))
  return params


def _from_flat_params(flat: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
  """Our own names, `features_N.kernel` (or `/`-separated) -> nested params, checking shapes."""
  params, problems = {}, []
  for idx, cin, cout in CONVS:
    name = param_name(idx)
    want = {"kernel": (3, 3, cin, cout), "bias": (cout,)}
    entry = {}
    for leaf, shape in want.items():
      value = flat.get(f"{name}.{leaf}", flat.get(f"{name}/{leaf}"))
      if value is None:
        problems.append(f"missing {name}.{leaf}")
      elif np.shape(value) != shape:
        problems.append(f"{name}.{leaf}: shape {np.shape(value)}, want {shape}")
      else:
        entry[leaf] = np.asarray(value, np.float32)
    params[name] = entry
  if problems:
    raise ValueError("not a VGG19 parameter file: " + "; ".join(problems))
  return params


def load_vgg19_params(path: str | os.PathLike[str]) -> dict[str, dict[str, np.ndarray]]:
  """Reads VGG19 params from torchvision's `.pth` or an `.npz`.

  The `.npz` may hold torchvision names (`features.0.weight`, OIHW) or ours (`features_0.kernel`,
  HWIO, as written by `talkingmem.tools.convert_vgg19`). Returns the `params` collection for VGG19.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"VGG19 weights not found at {path}: download {WEIGHTS_FILE} by hand "
                            f"from {WEIGHTS_URL} (optionally convert it to .npz with "
                            "python -m talkingmem.tools.convert_vgg19)")
  if path.suffix == ".npz":
    with np.load(path) as data:
      flat = {k: data[k] for k in data.files}
    if any(k.startswith("features.") for k in flat):
      return convert_vgg19(flat)
    return _from_flat_params(flat)
  return convert_vgg19(torch_io.state_dict_from_checkpoint(torch_io.load_torch_file(path)))


def perceptual_loss_params(loss_config: Any) -> dict[str, dict[str, np.ndarray]] | None:
  """VGG19 weights for a task's perceptual loss, or None (then the task uses the pixel-pyramid loss).

  Says so plainly at start when no weights file is configured: never silently random VGG features.
  """
  weights = loss_config.get("vgg19_weights")
  if weights:
    return load_vgg19_params(weights)
  if loss_config.get("perceptual", 0) > 0:
    logging.warning(
        "No VGG19 weights (config.loss.vgg19_weights): the perceptual loss is replaced by the "
        "documented pixel-space pyramid loss (L1 + 1-SSIM at scales %s). Supply torchvision's "
        "vgg19-dcbb9e9d.pth (or its .npz from talkingmem.tools.convert_vgg19) for the paper's loss.",
        tuple(loss_config.scales))
  return None


def flatten_params(params: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
  """Nested VGG19 params -> `{"features_N.kernel": array}`, the `.npz` layout we write."""
  return {f"{name}.{leaf}": np.asarray(v) for name, leaves in params.items()
          for leaf, v in leaves.items()}
