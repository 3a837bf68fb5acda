"""`--mode=info`: MCNet's parameter counts, GFLOPs per frame and forward time.

  python -m talkingmem.main --config=configs/mcnet.py[:variant] --mode=info [--notime_forward]
"""
from __future__ import annotations

import json

from absl import app, flags
import ml_collections

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_bool("time_forward", True, "Also time one forward pass (compiles the model).")


def run(config: ml_collections.ConfigDict | None) -> None:
  if config is None:
    raise app.UsageError("--mode=info needs --config")
  if config.task != "mcnet":
    raise app.UsageError(f"--mode=info supports task 'mcnet', not {config.task!r}")
  from talkingmem.mcnet.model_info import mcnet_info  # pylint: disable=g-import-not-at-top
  print(json.dumps(mcnet_info(config.model, FLAGS.time_forward), indent=1))
