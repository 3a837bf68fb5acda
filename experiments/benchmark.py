"""Training-step and inference benchmark of a config's model on the current device.

  python experiments/benchmark.py --config=configs/mcnet.py:demo --batch=8
  python experiments/benchmark.py --config=configs/mcnet.py --batch=8 --dtype=bfloat16

Prints one JSON line per measurement: device kind, config, batch, dtype, compile seconds, median step
seconds over --repeats runs after warm-up, samples/s, XLA-counted FLOPs and, where the device reports
it, peak memory. Random inputs: data loading is measured by experiments/benchmark_input_pipeline.py.
"""
from __future__ import annotations

import json
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

from talkingmem import benchmarking, sharding, train
from talkingmem.mcnet.model import MCNet
from talkingmem.task import get_task

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (`path.py:variant`).")
flags.DEFINE_integer("batch", 8, "Global batch size.")
flags.DEFINE_integer("repeats", 5, "Timed repetitions (median reported).")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
flags.DEFINE_list("what", ["train", "inference"], "Measurements to run.")
flags.DEFINE_string("tag", "", "Free-form label added to every JSON line.")


def main(argv):
  del argv
  config = FLAGS.config
  config.unlock()
  config.train.compute_dtype = FLAGS.dtype
  config.data.batch_size = FLAGS.batch
  size = config.model.image_size
  rng = np.random.default_rng(0)
  batch = {k: rng.uniform(size=(FLAGS.batch, size, size, 3)).astype(np.float32)
           for k in ("source", "driving")}
  mesh = sharding.make_mesh()
  gbatch = sharding.global_batch(batch, mesh)
  base = {"device": jax.devices()[0].device_kind, "num_devices": jax.device_count(),
          "image_size": size, "num_kp": config.model.num_kp, "use_memory": config.model.use_memory,
          "batch": FLAGS.batch, "dtype": FLAGS.dtype, "tag": FLAGS.tag,
          "date": time.strftime("%Y-%m-%d")}
  task = get_task(config)
  if "train" in FLAGS.what:
    tx, schedule = task.optimizer(1000)
    repl = sharding.replicated(mesh)
    state = jax.jit(lambda b: train.create_train_state(task, tx, jax.random.PRNGKey(0), b),
                    out_shardings=repl)(gbatch)
    step = jax.jit(train.make_train_step(task, tx, schedule, jax.random.PRNGKey(1)), donate_argnums=(0,))
    _, compile_s, flops, _ = benchmarking.compile_with_cost(step, state, gbatch)
    holder = [state]

    def run(b):
      holder[0], metrics = step(holder[0], b)
      return metrics["loss"]

    _, _, step_s = benchmarking.timed(run, gbatch, repeats=FLAGS.repeats)
    print(json.dumps(base | {"what": "train_step", "compile_s": round(compile_s, 2),
                             "step_s": round(step_s, 4), "samples_per_s": round(FLAGS.batch / step_s, 2),
                             "gflops_per_sample": round(flops / FLAGS.batch / 1e9, 2),
                             "peak_bytes": benchmarking.device_memory()[0]}), flush=True)
  if "inference" in FLAGS.what:
    model = task.model
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), gbatch["source"][:1], gbatch["driving"][:1])
    dtype = jnp.dtype(FLAGS.dtype)
    variables = jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                             variables)
    src = gbatch["source"].astype(dtype)

    @jax.jit
    def animate(v, source, driving):
      kp_s = model.apply(v, source, method=MCNet.detect)
      kp_d = model.apply(v, driving, method=MCNet.detect)
      return model.apply(v, source, kp_s, kp_d, method=MCNet.generate)["prediction"]

    _, compile_s, flops, _ = benchmarking.compile_with_cost(animate, variables, src, src)
    _, _, step_s = benchmarking.timed(animate, variables, src, src, repeats=FLAGS.repeats)
    print(json.dumps(base | {"what": "inference", "compile_s": round(compile_s, 2),
                             "step_s": round(step_s, 4), "frames_per_s": round(FLAGS.batch / step_s, 2),
                             "gflops_per_frame": round(flops / FLAGS.batch / 1e9, 2),
                             "peak_bytes": benchmarking.device_memory()[0]}), flush=True)


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
