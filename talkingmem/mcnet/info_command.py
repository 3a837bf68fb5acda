"""`--mode=info`: MCNet's parameter counts, GFLOPs per frame and forward time.

  python -m talkingmem.main --config=configs/mcnet.py[:variant] --mode=info [--notime_forward]
"""
from __future__ import annotations

import json

from absl import flags
import ml_collections

from data_pipelines.user_errors import UserInputError
from talkingmem.config_checks import validate_config

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_bool("time_forward", True, "Also time one forward pass (compiles the model).")


def run(config: ml_collections.ConfigDict | None) -> None:
  validate_config(config, "info")
  if config.task != "mcnet":
    raise UserInputError(f"--mode=info supports task 'mcnet', not {config.task!r}; give --config=configs/mcnet.py")
  from talkingmem.mcnet.model_info import mcnet_info  # pylint: disable=g-import-not-at-top
  print(json.dumps(mcnet_info(config.model, FLAGS.time_forward), indent=1))
