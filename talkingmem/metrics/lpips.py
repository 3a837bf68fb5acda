"""LPIPS v0.1 (AlexNet / VGG16 variants) in Flax Linen.

Follows the `lpips` package (Zhang et al. 2018): inputs in [0,1] are mapped to
[-1,1], passed through its scaling layer and a torchvision backbone; each tapped
ReLU output is unit-normalised over channels, the squared difference is weighted
by a non-negative 1x1 linear head, averaged over space and summed over layers.

Weights are never downloaded and never random: the backbone comes from a
user-supplied torchvision file (`alexnet-owt-7be5be79.pth` or
`vgg16-397923af.pth`, `features.N.weight/bias` keys), the heads from the
`lpips` package's `weights/v0.1/{alex,vgg}.pth` (or `.npz` copies of either).
Without them, `LPIPSUnavailable` says which file to supply.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkingmem import torch_io

__all__ = [
    "BACKBONE_FILES", "LPIPS", "LPIPSBackbone", "LPIPSMetric",
    "LPIPSUnavailable", "TAP_CHANNELS", "convert_backbone",
    "convert_linear_heads", "default_heads_path", "layer_names",
    "load_lpips_params",
]

# Torchvision weight files and where users can fetch them by hand.
BACKBONE_FILES = {
    "alex": ("alexnet-owt-7be5be79.pth",
             "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16-397923af.pth",
            "https://download.pytorch.org/models/vgg16-397923af.pth"),
}
_SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
_SCALE = np.array([0.458, 0.448, 0.450], np.float32)
_EPS = 1e-10

# Layer programs over torchvision `features` indices. Ops: ("conv", index,
# in_ch, out_ch, kernel, stride, pad), ("pool", kernel, stride), ("tap",).
# ReLU follows every conv. Taps are the lpips slices' outputs.
_C = "conv"
_ARCH: dict[str, list[tuple[Any, ...]]] = {
    "alex": [
        (_C, 0, 3, 64, 11, 4, 2), ("tap",), ("pool", 3, 2),
        (_C, 3, 64, 192, 5, 1, 2), ("tap",), ("pool", 3, 2),
        (_C, 6, 192, 384, 3, 1, 1), ("tap",),
        (_C, 8, 384, 256, 3, 1, 1), ("tap",),
        (_C, 10, 256, 256, 3, 1, 1), ("tap",),
    ],
    "vgg": [
        (_C, 0, 3, 64, 3, 1, 1), (_C, 2, 64, 64, 3, 1, 1), ("tap",),
        ("pool", 2, 2), (_C, 5, 64, 128, 3, 1, 1), (_C, 7, 128, 128, 3, 1, 1),
        ("tap",), ("pool", 2, 2), (_C, 10, 128, 256, 3, 1, 1),
        (_C, 12, 256, 256, 3, 1, 1), (_C, 14, 256, 256, 3, 1, 1), ("tap",),
        ("pool", 2, 2), (_C, 17, 256, 512, 3, 1, 1),
        (_C, 19, 512, 512, 3, 1, 1), (_C, 21, 512, 512, 3, 1, 1), ("tap",),
        ("pool", 2, 2), (_C, 24, 512, 512, 3, 1, 1),
        (_C, 26, 512, 512, 3, 1, 1), (_C, 28, 512, 512, 3, 1, 1), ("tap",),
    ],
}
TAP_CHANNELS = {
    net: [op[3] for op, nxt in zip(arch, arch[1:]) if nxt == ("tap",)]
    for net, arch in _ARCH.items()
}


class LPIPSUnavailable(RuntimeError):
  """LPIPS weights are missing; the message names the file to supply."""


def _check_net(net: str) -> None:
  if net not in _ARCH:
    raise ValueError(f"unknown LPIPS net {net!r}; expected {list(_ARCH)}")


class LPIPSBackbone(nn.Module):
  """Torchvision AlexNet/VGG16 `features`, returning the tapped ReLU outputs."""
  net: str = "alex"

  @nn.compact
  def __call__(self, x: jax.Array) -> list[jax.Array]:
    _check_net(self.net)
    taps = []
    for op in _ARCH[self.net]:
      if op[0] == _C:
        _, idx, _, out_ch, k, stride, pad = op
        x = nn.Conv(out_ch, (k, k), strides=(stride, stride),
                    padding=((pad, pad), (pad, pad)),
                    precision=jax.lax.Precision.HIGHEST,
                    name=f"features_{idx}")(x)
        x = nn.relu(x)
      elif op[0] == "pool":
        x = nn.max_pool(x, (op[1], op[1]), strides=(op[2], op[2]),
                        padding="VALID")
      else:
        taps.append(x)
    return taps


class LPIPS(nn.Module):
  """LPIPS distance between NHWC images in [0,1]; returns (N,) distances."""
  net: str = "alex"

  @nn.compact
  def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
    _check_net(self.net)
    backbone = LPIPSBackbone(self.net, name="backbone")
    scale = lambda x: (2.0 * x - 1.0 - _SHIFT) / _SCALE  # noqa: E731
    feats_a = backbone(scale(jnp.asarray(a, jnp.float32)))
    feats_b = backbone(scale(jnp.asarray(b, jnp.float32)))
    total = 0.0
    for i, (fa, fb) in enumerate(zip(feats_a, feats_b)):
      na = fa / (jnp.sqrt(jnp.sum(fa * fa, -1, keepdims=True)) + _EPS)
      nb = fb / (jnp.sqrt(jnp.sum(fb * fb, -1, keepdims=True)) + _EPS)
      w = self.param(f"lin{i}", nn.initializers.zeros, (fa.shape[-1],))
      total = total + jnp.mean(jnp.square(na - nb) @ w, axis=(1, 2))
    return total


def convert_backbone(state_dict: Mapping[str, Any], net: str) -> dict:
  """Torchvision `features.N.{weight,bias}` (OIHW) -> backbone params (HWIO)."""
  _check_net(net)
  params, problems = {}, []
  for op in _ARCH[net]:
    if op[0] != _C:
      continue
    _, idx, in_ch, out_ch, k, _, _ = op
    w_key, b_key = f"features.{idx}.weight", f"features.{idx}.bias"
    w, b = state_dict.get(w_key), state_dict.get(b_key)
    if w is None or b is None:
      problems.append(f"missing {w_key if w is None else b_key}")
      continue
    w, b = np.asarray(w, np.float32), np.asarray(b, np.float32)
    if w.shape != (out_ch, in_ch, k, k) or b.shape != (out_ch,):
      problems.append(f"{w_key}: {w.shape}/{b.shape}, want "
                      f"{(out_ch, in_ch, k, k)}/{(out_ch,)}")
      continue
    params[f"features_{idx}"] = {"kernel": w.transpose(2, 3, 1, 0), "bias": b}
  if problems:
    raise ValueError(f"not a torchvision {net} state dict: " +
                     "; ".join(problems))
  return params


def convert_linear_heads(state_dict: Mapping[str, Any], net: str) -> dict:
  """lpips `lin{i}.model.1.weight` (1,C,1,1) -> `{"lin{i}": (C,)}`."""
  _check_net(net)
  params = {}
  for i, ch in enumerate(TAP_CHANNELS[net]):
    keys = [f"lin{i}.model.1.weight", f"lin{i}.model.0.weight"]
    w = next((state_dict[k] for k in keys if k in state_dict), None)
    if w is None:
      raise ValueError(f"not lpips {net} heads: missing {keys[0]}")
    w = np.asarray(w, np.float32).reshape(-1)
    if w.shape != (ch,) or (w < 0).any() or not np.isfinite(w).all():
      raise ValueError(f"lpips {net} head lin{i}: expected {ch} finite "
                       f"non-negative weights, got shape {w.shape}")
    params[f"lin{i}"] = w
  return params


def _read_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  path = pathlib.Path(path)
  if path.suffix == ".npz":
    with np.load(path) as data:
      return {k: data[k] for k in data.files}
  return torch_io.state_dict_from_checkpoint(torch_io.load_torch_file(path))


def default_heads_path(net: str) -> pathlib.Path | None:
  """`weights/v0.1/{net}.pth` of the installed lpips package (not imported)."""
  spec = importlib.util.find_spec("lpips")
  if spec is None or spec.origin is None:
    return None
  path = pathlib.Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"
  return path if path.exists() else None


def load_lpips_params(net: str = "alex",
                      backbone_path: str | os.PathLike[str] | None = None,
                      heads_path: str | os.PathLike[str] | None = None) -> dict:
  """Builds `LPIPS` params from weight files (`.pth` or `.npz`).

  Args:
    net: "alex" or "vgg".
    backbone_path: the torchvision file (see `BACKBONE_FILES`). Required.
    heads_path: lpips v0.1 heads; defaults to the installed lpips package's.

  Returns:
    `{"params": {"backbone": ..., "lin0": ..., ...}}` for `LPIPS(net).apply`.

  Raises:
    LPIPSUnavailable: a weight file is not given or does not exist.
  """
  _check_net(net)
  fname, url = BACKBONE_FILES[net]
  if backbone_path is None or not pathlib.Path(backbone_path).is_file():
    where = "not given" if backbone_path is None else f"{backbone_path} missing"
    raise LPIPSUnavailable(
        f"LPIPS ({net}) needs the torchvision backbone weights ({where}): "
        f"download {fname} by hand from {url} and pass "
        f"lpips_backbone=/path/to/{fname}")
  heads_path = heads_path or default_heads_path(net)
  if heads_path is None or not pathlib.Path(heads_path).is_file():
    raise LPIPSUnavailable(
        f"LPIPS ({net}) needs the v0.1 linear heads: install the lpips package "
        f"without torch (pip install --no-deps lpips==0.1.4) or pass "
        f"lpips_heads=/path/to/weights/v0.1/{net}.pth (got {heads_path})")
  params = {"backbone": convert_backbone(_read_weights(backbone_path), net)}
  params.update(convert_linear_heads(_read_weights(heads_path), net))
  return {"params": params}


class LPIPSMetric:
  """A jitted LPIPS distance with loaded weights: `metric(a, b) -> (N,)`."""

  def __init__(self, net: str, variables: Mapping[str, Any]):
    self.net = net
    self.variables = jax.tree_util.tree_map(jnp.asarray, dict(variables))
    self._apply = jax.jit(LPIPS(net).apply)

  @classmethod
  def from_files(cls, net: str = "alex",
                 backbone_path: str | os.PathLike[str] | None = None,
                 heads_path: str | os.PathLike[str] | None = None
                 ) -> "LPIPSMetric":
    return cls(net, load_lpips_params(net, backbone_path, heads_path))

  def __call__(self, a: jax.Array, b: jax.Array,
               reduce: bool = False) -> jax.Array:
    """Distances per image (N,) for NHWC images in [0,1], or their mean."""
    d = self._apply(self.variables, a, b)
    return d.mean() if reduce else d


def layer_names(net: str) -> Sequence[str]:
  """Backbone conv param names, e.g. `features_0` (torchvision index)."""
  _check_net(net)
  return [f"features_{op[1]}" for op in _ARCH[net] if op[0] == _C]
