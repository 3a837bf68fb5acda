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

A new artefact is one function decorated with `@artefact(task)` that returns an `Artefact` (or None
when the checkpoint lacks what it needs, e.g. the detector-only import has no generator).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
from typing import Any, Callable, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax.traverse_util import flatten_dict

from talkingmem import exported as exported_lib
from talkingmem.exported import load_exported  # noqa: F401  (re-exported for convenience)

FORMATS = ("stablehlo", "savedmodel")
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


def artefact(task: str):
  """Registers a builder `fn(source) -> Artefact | None` for workdirs of `task`."""
  def register(builder):
    _BUILDERS.setdefault(task, []).append(builder)
    return builder
  return register


def build_artefacts(source: Source) -> list[Artefact]:
  task = source.config.get("task")
  if task not in _BUILDERS:
    raise ValueError(f"no export for task {task!r}; exportable tasks: {sorted(_BUILDERS)}")
  built = [a for a in (builder(source) for builder in _BUILDERS[task]) if a is not None]
  if not built:
    raise ValueError(f"{source.origin}: nothing to export (its checkpoint lacks every exported module)")
  return built


def _subtree(variables: dict, module: str) -> dict | None:
  """{collection: {module: ...}} for one top-level module, or None if the variables lack it."""
  out = {col: {module: tree[module]} for col, tree in variables.items() if module in tree}
  return out or None


# ---------------------------------------------------------------------------------------------------
# MCNet.


def _mcnet(config: ml_collections.ConfigDict):
  from talkingmem.mcnet.model import MCNet  # pylint: disable=g-import-not-at-top
  model_config = ml_collections.ConfigDict(config.model.to_dict())
  # Per-sample convs as one batched matmul: the grouped conv would need feature_group_count = b,
  # which a symbolic batch cannot give. Same result up to float rounding.
  model_config.conv_method = "im2col"
  return MCNet(model_config), MCNet


def _kp_inputs(prefix: str, config: ml_collections.ConfigDict) -> dict:
  k = int(config.model.num_kp)
  out = {f"{prefix}_value": ((BATCH, k, 2), "float32")}
  if config.model.estimate_jacobian:
    out[f"{prefix}_jacobian"] = ((BATCH, k, 2, 2), "float32")
  return out


def _kp(inputs: dict, prefix: str) -> dict:
  return {k: inputs[f"{prefix}_{k}"] for k in ("value", "jacobian") if f"{prefix}_{k}" in inputs}


@artefact("mcnet")
def mcnet_detect(source: Source) -> Artefact | None:
  params = _subtree(source.variables, "kp_detector")
  if params is None:
    return None
  model, cls = _mcnet(source.config)
  size, channels = int(source.config.model.image_size), int(source.config.model.num_channels)

  def detect(params, inputs):
    kp = model.apply(params, inputs["image"], method=cls.detect)
    return {k: kp[k] for k in ("value", "jacobian") if k in kp}

  return Artefact("detect", detect, params, {"image": ((BATCH, size, size, channels), "float32")},
                  "keypoints of images in [0, 1]: value (x, y) in [-1, 1], jacobian")


@artefact("mcnet")
def mcnet_animate_frame(source: Source) -> Artefact | None:
  params = _subtree(source.variables, "generator")
  if params is None:
    return None
  relative, adapt_scale = source.options.get("relative", True), source.options.get("adapt_scale", False)
  from talkingmem.mcnet.normalize import normalize_kp  # pylint: disable=g-import-not-at-top
  model, cls = _mcnet(source.config)
  size, channels = int(source.config.model.image_size), int(source.config.model.num_channels)
  inputs = {"source": ((BATCH, size, size, channels), "float32"), **_kp_inputs("kp_source", source.config),
            **_kp_inputs("kp_driving", source.config)}
  if relative:
    inputs.update(_kp_inputs("kp_initial", source.config))

  def animate_frame(params, inputs):
    kp_source, kp_driving = _kp(inputs, "kp_source"), _kp(inputs, "kp_driving")
    if relative:  # each batch element is its own request: one movement scale per element
      kp_driving = normalize_kp(kp_source, kp_driving, _kp(inputs, "kp_initial"),
                                adapt_movement_scale=adapt_scale, use_relative_movement=True,
                                use_relative_jacobian=True, scale_per_sample=True)
      kp_driving = {k: kp_driving[k] for k in ("value", "jacobian") if k in kp_driving}
    out = model.apply(params, inputs["source"], kp_source, kp_driving, method=cls.generate)
    return {"prediction": out["prediction"]}

  scaled = ", scaled by hull areas" if adapt_scale else ""
  motion = f"relative to kp_initial (the driving reference frame){scaled}" if relative else "absolute"
  return Artefact("animate_frame", animate_frame, params, inputs,
                  f"the source moved to the driving keypoints, motion {motion}: prediction in [0, 1]")


# ---------------------------------------------------------------------------------------------------
# MemFace audio-to-expression.


def a2e_window_shape(config: ml_collections.ConfigDict, params: dict) -> tuple[int, int]:
  """(W, D) of one audio window: D from the first conv, W from the config, checked against the
  flattened size the projection expects."""
  encoder = params["window_encoder"]
  convs = sorted(k for k in encoder if k.startswith("conv_"))
  dim = int(encoder[convs[0]]["kernel"].shape[1])
  window = int(config.data.get("feature_window", 16))
  length = window
  for _ in convs:
    length = -(-length // 2)
  want = int(encoder["proj"]["kernel"].shape[0])
  got = length * int(encoder[convs[-1]]["kernel"].shape[-1])
  if got != want:
    raise ValueError(f"audio windows of {window} frames do not fit the checkpoint's projection ({got} != "
                     f"{want} inputs); set config.data.feature_window in the workdir's config.json")
  return window, dim


@artefact("memface_a2e")
def memface_a2e(source: Source) -> Artefact:
  from talkingmem.memface import a2e  # pylint: disable=g-import-not-at-top
  params = dict(source.variables)  # 'params', and the explicit-memory ablation's memory collection
  m = source.config.model.to_dict()
  m["conv_features"] = tuple(m.get("conv_features", (32, 32, 64, 64)))
  model = a2e.AudioToExpression(num_coeffs=int(params["params"]["head"]["kernel"].shape[-1]), **m)
  window, dim = a2e_window_shape(source.config, params["params"])
  frames = int(source.config.data.window)  # fixed: the positional table is built from a static length

  def audio_to_expression(params, inputs):
    return {"coeffs": model.apply(params, inputs["audio"], inputs["mask"])["coeffs"]}

  return Artefact("a2e", audio_to_expression, params,
                  {"audio": ((BATCH, frames, window, dim), "float32"), "mask": ((BATCH, frames), "bool")},
                  f"expression coefficients per video frame from audio windows "
                  f"({source.config.data.get('feature')} features standardised with the training "
                  "statistics); mask marks valid frames")


# ---------------------------------------------------------------------------------------------------
# MemFace neural renderer (the speak step: one frame per batch element).


@artefact("memface_renderer")
def memface_render_frame(source: Source) -> Artefact:
  """Renderer with ONE speaker's explicit memory among its parameters (the first training speaker's):
  serving another speaker = swapping the `memory` arrays of the params file for that speaker's .npz
  (talkingmem.memface.explicit_memory.save_explicit_memory writes the same arrays)."""
  from talkingmem.memface import explicit_memory, renderer  # pylint: disable=g-import-not-at-top
  c = source.config.model
  variables = source.variables
  params = variables["params"]
  kind = str(c.get("memory", "explicit"))
  state = {k: v for k, v in variables.items() if k != "params"}
  weights = {"params": params.get("renderer", params)}  # The task keeps a discriminator beside it.
  memory = None
  if kind == "explicit":
    stacked = state["explicit_memory"]
    memory = {k: np.asarray(stacked[k])[0] for k in explicit_memory.ARRAYS if k != "frame_ids"}
  elif kind == "implicit":
    memory = {k: np.asarray(v) for k, v in state["memory_stats"].items()}
  model = renderer.NeuralRenderer(c)
  size = int(c.image_size)
  image = ((BATCH, size, size, 3), "float32")
  inputs = {"rendered": image, "masked": image}
  if memory is not None:  # The query width: memory keys, or the implicit variant's query statistics.
    inputs["query"] = ((BATCH, int(np.shape(memory["keys" if kind == "explicit" else "key_mean"])[-1])),
                       "float32")

  def render_frame(params, inputs):
    query = inputs.get("query", jnp.zeros(inputs["rendered"].shape[:1] + (1,), jnp.float32))
    image = model.apply(params["variables"], inputs["rendered"], inputs["masked"], query,
                        params.get("memory"))
    return {"prediction": image}

  params = {"variables": weights} if memory is None else {"variables": weights, "memory": memory}
  return Artefact("render_frame", render_frame, params, inputs,
                  "MemFace renderer: shaded face render + masked template frame (both in [0, 1]) and "
                  "the frame's mouth vertices (model space, flattened) -> frame in [0, 1]; memory "
                  f"{kind!r}")


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
  unknown = set(formats) - set(FORMATS)
  if unknown or not formats:
    raise ValueError(f"unknown export formats {sorted(unknown)}; choose from {FORMATS}")
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
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
