"""`--mode=train` (the default): train_and_evaluate(config, workdir), on one host or many.

  python -m talkingmem.main --config=configs/mcnet.py:demo --workdir=workdirs/demo [--multihost]
"""
from __future__ import annotations

import os

from absl import flags, logging
import jax
import ml_collections

from data_pipelines.user_errors import UserInputError
from talkingmem.config_checks import validate_config

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (TPU pods, multi-node "
                    "GPU); also done when JAX_COORDINATOR_ADDRESS is set.")


def initialize_multihost() -> None:
  """jax.distributed.initialize(); jax reads only JAX_COORDINATOR_ADDRESS itself, so hand-started
  processes give their count and id through JAX_NUM_PROCESSES / JAX_PROCESS_ID."""
  kwargs = {k: int(os.environ[v]) for k, v in (("num_processes", "JAX_NUM_PROCESSES"),
                                                ("process_id", "JAX_PROCESS_ID")) if v in os.environ}
  jax.distributed.initialize(**kwargs)


def run(config: ml_collections.ConfigDict | None) -> None:
  validate_config(config, "train")
  if not FLAGS.workdir:
    raise UserInputError("--mode=train needs --workdir=<folder for checkpoints and summaries>")
  if FLAGS.multihost or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    initialize_multihost()
  from talkingmem import train  # pylint: disable=g-import-not-at-top  (the data and checkpoint stacks)
  logging.info("JAX devices: %s (process %d of %d)", jax.devices(), jax.process_index(),
               jax.process_count())
  train.train_and_evaluate(config, FLAGS.workdir)
