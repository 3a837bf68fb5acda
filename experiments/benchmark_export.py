"""Sizes and run times of the exported MCNet artefacts against the jitted in-process functions.

  python experiments/benchmark_export.py --config=configs/mcnet.py:demo --batches=1,8 --repeats=20

Random weights (`animate.random_variables`). For each artefact (detect, animate_frame) and batch:
the jitted original (the model's own functions, LU inverse), the same with the export's closed-form
inverse ('jitted_closed_form'); the StableHLO artefact loaded by
`talkingmem.exported.load_exported` (jax only), with device arrays ('stablehlo': the jitted
`Exported.call`) and through `ServedFunction.__call__` ('stablehlo_served': input checks, numpy in
and out); and the SavedModel's serving signature through TensorFlow (numpy out). Prints one JSON line
per measurement (median and min milliseconds over --repeats calls, interleaved across the kinds, after
two warm-up calls each, which also compile) and one with the file sizes.
"""
from __future__ import annotations

import json
import pathlib
import tempfile
import time

from absl import app, flags
import jax
import numpy as np
from ml_collections import config_flags

from talkingmem import export, exported

from talkingmem.mcnet import animate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (`path.py:variant`).")
flags.DEFINE_list("batches", ["1", "8"], "Batch sizes.")
flags.DEFINE_integer("repeats", 20, "Timed calls per measurement.")
flags.DEFINE_string("out", None, "Export folder (default: a temporary one).")


def _time(runs: dict, repeats: int) -> dict:
  """Median and min ms per run; the runs are interleaved call by call, so the load of other jobs on the
  machine hits them alike."""
  for fn in runs.values():
    for _ in range(2):
      jax.block_until_ready(fn())
  times = {kind: [] for kind in runs}
  for _ in range(repeats):
    for kind, fn in runs.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn())
      times[kind].append(time.perf_counter() - t0)
  return {kind: {"median_ms": round(1e3 * float(np.median(t)), 2), "min_ms": round(1e3 * float(np.min(t)), 2)}
          for kind, t in times.items()}


def _sizes(folder: pathlib.Path) -> dict:
  out = {}
  for path in sorted(folder.rglob("*")):
    if path.is_file():
      top = path.relative_to(folder).parts
      key = "/".join(top[:2]) if top[0] == "savedmodel" else top[0]
      out[key] = out.get(key, 0) + path.stat().st_size
  return out


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  config = FLAGS.config
  variables = jax.tree.map(np.asarray, animate.random_variables(config.model))
  folder = pathlib.Path(FLAGS.out or tempfile.mkdtemp(prefix="export_bench_"))
  source = export.Source(config, variables, "random weights", {"relative": True, "adapt_scale": False})
  export.export(source, folder, export.FORMATS)
  print(json.dumps({"sizes_bytes": _sizes(folder)}))
  originals = {a.name: a for a in export.build_artefacts(source)}
  served = exported.load_exported(folder)
  rng = np.random.default_rng(0)
  for batch in map(int, FLAGS.batches):
    for name, art in originals.items():
      inputs = {}
      for key, (shape, dtype) in art.inputs.items():
        shape = tuple(batch if d == export.BATCH else d for d in shape)
        value = rng.uniform(-0.5, 0.5, shape) if "value" in key else rng.uniform(0, 1, shape)
        if "jacobian" in key:
          value = np.eye(2) + 0.05 * rng.standard_normal(shape)
        inputs[key] = value.astype(dtype)
      jitted, params = jax.jit(art.fn), jax.device_put(art.params)
      device_inputs = jax.device_put(inputs)
      signature = tf.saved_model.load(str(folder / "savedmodel" / name)).signatures["serving_default"]
      tf_inputs = {k: tf.constant(v) for k, v in inputs.items()}
      runs = {"jitted": lambda: jitted(params, device_inputs),  # noqa: B023
              "stablehlo": lambda: served[name]._call(served[name].params, device_inputs),  # noqa: B023
              "stablehlo_served": lambda: served[name](**inputs),  # noqa: B023  (host numpy in and out)
              "savedmodel": lambda: {k: v.numpy() for k, v in signature(**tf_inputs).items()}}  # noqa: B023
      for kind, stats in _time(runs, FLAGS.repeats).items():
        print(json.dumps({"artefact": name, "batch": batch, "kind": kind, **stats}), flush=True)


if __name__ == "__main__":
  app.run(main)
