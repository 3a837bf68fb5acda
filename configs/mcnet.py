"""MCNet configurations.

Default: the paper's VoxCeleb 256x256 setting (15 keypoints, meta-memory 512x32x32, batch 64 global).
  python -m talkingmem.main --config=configs/mcnet.py --workdir=workdirs/mcnet_vox
Variants (`configs/mcnet.py:NAME`):
  demo      small model on the embedded synthetic faces, ~10 minutes on a 2-core CPU
            python -m talkingmem.main --config=configs/mcnet.py:demo --workdir=workdirs/demo
  baseline  the paper's ablation baseline: no memory units
  tiny      test-sized model (64x64, few channels)
Any field can be overridden, e.g. --config.model.num_kp=10 --config.model.memory.memory_size=16.
"""
from __future__ import annotations

import ml_collections

from talkingmem.mcnet.config import model_config, tiny_model_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = arg or "paper"
  config = ml_collections.ConfigDict()
  config.task = "mcnet"
  config.seed = 0
  if variant in ("paper", "baseline"):
    config.model = model_config(256)
    config.model.use_memory = variant == "paper"
  elif variant == "demo":
    config.model = tiny_model_config(64)
  elif variant == "tiny":
    config.model = tiny_model_config(64)
  else:
    raise ValueError(f"unknown variant {variant!r}; choose paper, demo, baseline or tiny")
  return config
