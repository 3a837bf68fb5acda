"""Reading syncnet_python's `syncnet_v2.model` (a PyTorch state dict, no torch needed) as the
variables of our Flax SyncNet (talkingmem/metrics/sync.py).

Keys `netcnnaud.0.weight` become `params/netcnnaud_0/kernel` (conv OIHW -> HWIO, conv3d OIDHW ->
DHWIO, linear (out, in) -> (in, out)); BatchNorm weight / bias -> `params/.../scale` / `bias`,
running_mean / running_var -> `batch_stats/.../mean` / `var`; num_batches_tracked is dropped.
Prefixes `module.` and `__S__.` are stripped.
"""
from __future__ import annotations

import os

import numpy as np

from data_pipelines.user_errors import UserInputError
from talkingmem import torch_io


_PREFIXES = ("module.", "__S__.")
_BN_NAMES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
             "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


class ConversionError(UserInputError):
  """A state dict that is not syncnet_python's S."""


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  try:
    return torch_io.state_dict_from_checkpoint(torch_io.load_torch_file(path))
  except (torch_io.TorchFileError, TypeError, KeyError) as e:
    raise ConversionError(f"cannot read {path} as a SyncNet state dict: {e}") from e


def _strip(name: str) -> str:
  for prefix in _PREFIXES:
    if name.startswith(prefix):
      name = name[len(prefix):]
  return name


def flat_variables(state_dict: dict[str, np.ndarray]) -> dict[tuple[str, ...], np.ndarray]:
  """{(collection, layer, name): array} of our SyncNet from a torch state dict of SyncNetModel.S."""
  state_dict = {_strip(k): v for k, v in state_dict.items()}
  # Conv / linear layers have a weight of rank >= 2; BatchNorm's weight is its 1-D scale.
  weighted = {k[:-len(".weight")] for k, v in state_dict.items()
              if k.endswith(".weight") and np.ndim(v) >= 2}
  out: dict[tuple[str, ...], np.ndarray] = {}
  for key, value in state_dict.items():
    parts = key.split(".")
    if len(parts) != 3 or not parts[0].startswith("net"):
      raise ConversionError(f"unexpected key {key!r}: not a layer of syncnet_python's S")
    seq, index, name = parts
    if name == "num_batches_tracked":
      continue
    layer = f"{seq}_{index}"
    x = np.asarray(value, np.float32)
    owner = f"{seq}.{index}"
    if name == "weight" and owner in weighted:  # OI... -> ...IO
      out[("params", layer, "kernel")] = np.transpose(x, (*range(2, x.ndim), 1, 0))
    elif name == "bias" and owner in weighted:
      out[("params", layer, "bias")] = x
    elif name in _BN_NAMES:
      collection, new_name = _BN_NAMES[name]
      out[(collection, layer, new_name)] = x
    else:
      raise ConversionError(f"unexpected key {key!r}")
  return out
