"""Command-line entry point.

  python -m talkingmem.main --config=configs/mcnet.py:demo --workdir=workdirs/demo [--mode=train]
  python -m talkingmem.main --config=configs/mcnet.py --mode=info

Modes: train (train_and_evaluate), info (parameter counts, GFLOPs per frame and forward time).
"""
from __future__ import annotations

import json
import os

from absl import app, flags, logging
import jax
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, `path.py` or `path.py:variant`.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries and outputs.")
flags.DEFINE_enum("mode", "train", ["train", "info"], "What to run.")
flags.DEFINE_bool("time_forward", True, "info: also time one forward pass (compiles the model).")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (TPU pods, multi-node GPU); "
                  "also done when JAX_COORDINATOR_ADDRESS is set.")
flags.mark_flag_as_required("config")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = FLAGS.config
  if FLAGS.multihost or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    jax.distributed.initialize()
  if FLAGS.mode == "info":
    from talkingmem.model_info import mcnet_info
    if config.task != "mcnet":
      raise app.UsageError(f"--mode=info supports task 'mcnet', not {config.task!r}")
    print(json.dumps(mcnet_info(config.model, FLAGS.time_forward), indent=1))
    return
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required for training")
  from talkingmem import train  # imported late: pulls in the data and checkpoint stacks
  logging.info("JAX devices: %s (process %d of %d)", jax.devices(), jax.process_index(),
               jax.process_count())
  train.train_and_evaluate(config, FLAGS.workdir)


if __name__ == "__main__":
  jax.config.config_with_absl()
  app.run(main)
