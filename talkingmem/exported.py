"""Loads and calls the artefacts `talkingmem.export` writes, with jax and numpy only.

This file imports nothing else from talkingmem (nor Flax): a server can copy it alone.

  functions = load_exported("exported/")            # {'detect': ServedFunction, 'animate_frame': ...}
  kp = functions["detect"](image=frames)            # {'value': (B, K, 2), 'jacobian': (B, K, 2, 2)}

An export folder holds manifest.json and, per artefact NAME, NAME.stablehlo (the serialized
`jax.export.Exported`, batch dimension symbolic) and NAME.params.npz (its parameters, keys joined by
'/'; they are call arguments, so other weights of the same shapes can be swapped in).
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Mapping

import jax
import numpy as np

from data_pipelines.user_errors import UserInputError

MANIFEST = "manifest.json"
FORMAT = "talkingmem-export/1"


class ExportedInputError(UserInputError):
  """Inputs that do not match an artefact's manifest; the message says which and what it expects."""


def unflatten(flat: Mapping[str, np.ndarray]) -> dict:
  """{'a/b/c': x} -> {'a': {'b': {'c': x}}}."""
  tree: dict = {}
  for key, value in flat.items():
    *parents, leaf = key.split("/")
    node = tree
    for name in parents:
      node = node.setdefault(name, {})
    node[leaf] = value
  return tree


def load_params(path: str | pathlib.Path) -> dict:
  with np.load(path) as data:
    return unflatten({k: data[k] for k in data.files})


@dataclasses.dataclass
class ServedFunction:
  """One exported function with its parameters: call it with keyword arrays named as in `inputs`."""
  name: str
  exported: jax.export.Exported
  params: Any
  inputs: dict[str, dict]  # name -> {'shape': [...], 'dtype': ...}; 'b' marks the batch dimension
  outputs: dict[str, dict]
  description: str = ""

  def check(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    missing, unexpected = self.inputs.keys() - inputs.keys(), inputs.keys() - self.inputs.keys()
    if missing or unexpected:
      raise ExportedInputError(f"{self.name}: expected inputs {sorted(self.inputs)}; missing "
                               f"{sorted(missing)}, unexpected {sorted(unexpected)}")
    out, batch = {}, None
    for name, spec in self.inputs.items():
      value = np.asarray(inputs[name])
      shape = spec["shape"]
      fixed_ok = len(value.shape) == len(shape) and all(
          isinstance(d, str) or d == n for d, n in zip(shape, value.shape))
      if not fixed_ok or (batch is not None and value.shape[0] != batch):
        raise ExportedInputError(f"{self.name}: input {name!r} has shape {value.shape}, expected {shape} "
                                 "('b' is the batch size, the same for every input)")
      batch = value.shape[0]
      out[name] = value.astype(spec["dtype"], copy=False)
    return out

  def __post_init__(self):
    self._call = jax.jit(self.exported.call)  # one compiled executable per batch size, no re-tracing

  def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
    outputs = self._call(self.params, self.check(inputs))
    return {k: np.asarray(v) for k, v in outputs.items()}


def read_manifest(directory: str | pathlib.Path) -> dict:
  path = pathlib.Path(directory) / MANIFEST
  if not path.exists():
    raise FileNotFoundError(f"{path} not found: is {directory} a folder written by --mode=export?")
  manifest = json.loads(path.read_text())
  if manifest.get("format") != FORMAT:
    raise ValueError(f"{path}: format {manifest.get('format')!r}, this loader reads {FORMAT!r}")
  return manifest


def load_exported(directory: str | pathlib.Path, names: list[str] | None = None) -> dict[str, ServedFunction]:
  """The StableHLO artefacts of an export folder (all, or `names`), ready to call."""
  directory = pathlib.Path(directory)
  manifest = read_manifest(directory)
  out = {}
  for name, entry in manifest["artefacts"].items():
    if names is not None and name not in names:
      continue
    if not entry.get("stablehlo"):
      raise FileNotFoundError(f"{directory}: artefact {name!r} was exported without StableHLO")
    exported = jax.export.deserialize(bytearray((directory / entry["stablehlo"]).read_bytes()))
    params = jax.tree.map(jax.numpy.asarray, load_params(directory / entry["params"]))
    out[name] = ServedFunction(name, exported, params, entry["inputs"], entry["outputs"],
                               entry.get("description", ""))
  if names is not None and set(names) - out.keys():
    raise KeyError(f"{directory} has no artefact {sorted(set(names) - out.keys())}; it has "
                   f"{sorted(manifest['artefacts'])}")
  return out
