"""Exports a workdir's inference functions for serving: StableHLO (jax.export) and a TF SavedModel.

  python -m talkingmem.main --mode=export --workdir=W --export_dir=D [--export_formats=stablehlo,savedmodel]

Artefacts, by the workdir's task (config.task):
  mcnet        detect         image (b, H, W, 3) in [0, 1]          -> value (b, K, 2), jacobian (b, K, 2, 2)
               animate_frame  source (b, H, W, 3), kp_source_*, kp_driving_*, kp_initial_* (relative
                              motion from the driving reference frame, as `animate`) -> prediction
  memface_a2e  a2e            audio (b, T, W, D) normalised features, mask (b, T) -> coeffs (b, T, C)
Every artefact is a function (params, inputs) -> outputs with a symbolic batch dimension 'b'.

Formats, each per artefact beside D/manifest.json (names, shapes, dtypes, config):
  stablehlo   NAME.stablehlo (`jax.export` serialization) + NAME.params.npz. Parameters are arguments,
              not constants: the file stays small and weights can be swapped. Load with
              `talkingmem.exported.load_exported(D)`, which needs only jax and numpy.
  savedmodel  savedmodel/NAME: `jax2tf.convert` (native serialization: the same StableHLO inside an
              XlaCallModule op) in a tf.Module whose parameters are tf.Variables; signature
              'serving_default' takes the inputs by name, batch dimension None. Skipped, with a
              message, when TensorFlow is not installed. (orbax-export is not used: the mirror's newest,
              0.0.8, predates jax 0.10 and orbax-checkpoint 0.12.)

A new artefact is one function in the paper's export module (EXPORT_MODULES: talkingmem/mcnet/export.py,
talkingmem/memface/export.py) decorated with `@artefact(task)` that returns an `Artefact` (or None when
the checkpoint lacks what it needs, e.g. the detector-only import has no generator).
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import pathlib
import shutil
from typing import Any, Callable, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax.traverse_util import flatten_dict

from data_pipelines import video_io
from data_pipelines.user_errors import UserInputError, check_output
from talkingmem import exported as exported_lib
from talkingmem.exported import load_exported  # noqa: F401  (re-exported for convenience)

FORMATS = ("stablehlo", "savedmodel")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # what jax.export lowers for
BATCH = "b"


@dataclasses.dataclass(frozen=True)
class Artefact:
  """fn(params, inputs: dict) -> dict of arrays; `inputs` maps names to (shape with BATCH first, dtype)."""
  name: str
  fn: Callable[[Any, dict], dict]
  params: Any
  inputs: dict[str, tuple[tuple[int | str, ...], str]]
  description: str


@dataclasses.dataclass(frozen=True)
class Source:
  """What the builders read: the run's config, the model variables and export options."""
  config: ml_collections.ConfigDict
  variables: dict
  origin: str
  options: dict = dataclasses.field(default_factory=dict)  # e.g. relative, adapt_scale (MCNet)


_BUILDERS: dict[str, list[Callable[[Source], Artefact | None]]] = {}
# Task name -> the module whose `@artefact(task)` builders export it; imported on first use, so this
# module imports no paper.
EXPORT_MODULES = {
    "mcnet": "talkingmem.mcnet.export",
    "memface_a2e": "talkingmem.memface.export",
    "memface_renderer": "talkingmem.memface.export",
}


def artefact(task: str):
  """Registers a builder `fn(source) -> Artefact | None` for workdirs of `task`."""
  def register(builder):
    _BUILDERS.setdefault(task, []).append(builder)
    return builder
  return register


def build_artefacts(source: Source) -> list[Artefact]:
  task = source.config.get("task")
  if task in EXPORT_MODULES:
    importlib.import_module(EXPORT_MODULES[task])  # Registers its builders.
  if task not in _BUILDERS:
    raise UserInputError(f"no export for task {task!r}; exportable tasks: {sorted(_BUILDERS)}")
  built = [a for a in (builder(source) for builder in _BUILDERS[task]) if a is not None]
  if not built:
    raise UserInputError(f"{source.origin}: nothing to export (its checkpoint lacks every exported module)")
  return built


def subtree(variables: dict, module: str) -> dict | None:
  """{collection: {module: ...}} for one top-level module, or None if the variables lack it."""
  out = {col: {module: tree[module]} for col, tree in variables.items() if module in tree}
  return out or None


# ---------------------------------------------------------------------------------------------------
# Writing.


def _specs(artefact_: Artefact):
  (batch,) = jax.export.symbolic_shape(BATCH)
  inputs = {name: jax.ShapeDtypeStruct(tuple(batch if d == BATCH else d for d in shape), jnp.dtype(dtype))
            for name, (shape, dtype) in artefact_.inputs.items()}
  params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), artefact_.params)
  return params, inputs


def _shape_json(shape) -> list:
  return [d if isinstance(d, int) else str(d) for d in shape]


def export_stablehlo(artefact_: Artefact, out_dir: pathlib.Path, platforms: Sequence[str] | None = None
                     ) -> dict:
  """Writes NAME.stablehlo and NAME.params.npz; returns the manifest entry."""
  param_specs, input_specs = _specs(artefact_)
  exp = jax.export.export(jax.jit(artefact_.fn), platforms=platforms)(param_specs, input_specs)
  hlo = out_dir / f"{artefact_.name}.stablehlo"
  hlo.write_bytes(exp.serialize())
  params = out_dir / f"{artefact_.name}.params.npz"
  np.savez(params, **{"/".join(k): np.asarray(v) for k, v in flatten_dict(artefact_.params).items()})
  outputs = jax.tree.unflatten(exp.out_tree, exp.out_avals)
  return {"stablehlo": hlo.name, "params": params.name, "platforms": list(exp.platforms),
          "outputs": {k: {"shape": _shape_json(v.shape), "dtype": str(v.dtype)} for k, v in outputs.items()}}


def tensorflow_available() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def export_savedmodel(artefact_: Artefact, path: pathlib.Path, platforms: Sequence[str] | None = None
                      ) -> None:
  """A TF SavedModel of the artefact: jax2tf native serialization, parameters as tf.Variables."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  poly = {name: f"({', '.join(map(str, shape))})" for name, (shape, _) in artefact_.inputs.items()}
  tf_fn = jax2tf.convert(artefact_.fn, polymorphic_shapes=[None, poly], with_gradient=False,
                         native_serialization_platforms=tuple(platforms) if platforms else None)
  leaves, treedef = jax.tree.flatten(artefact_.params)
  variables = [tf.Variable(np.asarray(x), trainable=False) for x in leaves]
  module = tf.Module()
  module.param_variables = variables  # tracked (saved); swap weights with .assign after loading
  names = sorted(artefact_.inputs)

  @tf.function(autograph=False)
  def serve(**inputs):
    return tf_fn(jax.tree.unflatten(treedef, variables), {n: inputs[n] for n in names})

  specs = {name: tf.TensorSpec([None if d == BATCH else d for d in shape], tf.dtypes.as_dtype(dtype),
                               name=name)
           for name, (shape, dtype) in artefact_.inputs.items()}
  module.serve = serve
  tf.saved_model.save(module, str(path), signatures={"serving_default": serve.get_concrete_function(**specs)})


def load_source(workdir: str | pathlib.Path, step: int | None = None, options: dict | None = None) -> Source:
  from talkingmem import checkpointing  # pylint: disable=g-import-not-at-top  (pulls in Orbax)
  variables, config, step = checkpointing.load_variables(workdir, step)
  variables = jax.tree.map(np.asarray, variables)
  return Source(config, variables, f"{workdir} step {step}", dict(options or {}))


def _write(art: Artefact, out_dir: pathlib.Path, formats: Sequence[str], with_tf: bool,
           platforms: Sequence[str] | None) -> dict:
  entry = {"description": art.description,
           "inputs": {n: {"shape": list(s), "dtype": d} for n, (s, d) in art.inputs.items()}}
  if "stablehlo" in formats:
    entry.update(export_stablehlo(art, out_dir, platforms))
  if with_tf:
    export_savedmodel(art, out_dir / "savedmodel" / art.name, platforms)
    entry["savedmodel"] = f"savedmodel/{art.name}"
  return entry


def export(source: Source, out_dir: str | pathlib.Path, formats: Sequence[str] = FORMATS,
           platforms: Sequence[str] | None = None) -> dict:
  """Writes every artefact of the source's task in `formats` and manifest.json; returns the manifest.

  `platforms` (e.g. ('cpu', 'cuda', 'tpu')) lowers for several platforms at once; default: this one.
  """
  out_dir = check_export_args(out_dir, formats, platforms)
  final_dir, out_dir = out_dir, out_dir.with_name(f".{out_dir.name}.exporting")
  if out_dir.exists():
    shutil.rmtree(out_dir)  # Left by an interrupted export.
  out_dir.mkdir(parents=True)
  try:
    manifest = _export_into(source, out_dir, formats, platforms)
    video_io.replace_path(out_dir, final_dir)  # Whole, or not at all.
  finally:
    shutil.rmtree(out_dir, ignore_errors=True)
  return manifest


def check_export_args(out_dir: str | pathlib.Path, formats: Sequence[str],
                      platforms: Sequence[str] | None) -> pathlib.Path:
  """Formats, platforms and a new (or empty), writable export folder, before anything is built."""
  unknown = set(formats) - set(FORMATS)
  if unknown or not formats:
    raise UserInputError(f"unknown export formats {sorted(unknown)}; choose from {FORMATS} "
                         "(--export_formats)")
  bad = sorted(set(platforms or ()) - set(PLATFORMS))
  if bad or (platforms is not None and not platforms):
    raise UserInputError(f"--export_platforms: unknown platform(s) {bad}; choose from {', '.join(PLATFORMS)}")
  return check_output(out_dir, "--export_dir", folder_ok=True)


def _export_into(source: Source, out_dir: pathlib.Path, formats: Sequence[str],
                 platforms: Sequence[str] | None) -> dict:
  with_tf = "savedmodel" in formats and tensorflow_available()
  if "savedmodel" in formats and not with_tf:
    logging.warning("TensorFlow is not installed: skipping the SavedModel export "
                    "(pip install tensorflow-cpu)")
  entries = {art.name: _write(art, out_dir, formats, with_tf, platforms) for art in build_artefacts(source)}
  manifest = {"format": exported_lib.FORMAT, "task": source.config.get("task"), "source": source.origin,
              "options": source.options, "jax_version": jax.__version__, "batch_dimension": BATCH,
              "artefacts": entries,
              "savedmodel_skipped": ("TensorFlow not installed" if "savedmodel" in formats and not with_tf
                                     else None),
              "config": json.loads(source.config.to_json_best_effort())}
  (out_dir / exported_lib.MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
  return manifest


def export_workdir(workdir: str | pathlib.Path, out_dir: str | pathlib.Path, formats: Sequence[str] = FORMATS,
                   step: int | None = None, platforms: Sequence[str] | None = None,
                   options: dict | None = None) -> dict:
  return export(load_source(workdir, step, options), out_dir, formats, platforms)
