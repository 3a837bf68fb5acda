"""The flags that choose an MCNet model, shared by --mode=eval and --mode=animate."""
from __future__ import annotations

from absl import flags


def define_model_flags() -> None:
  flags.DEFINE_string("checkpoint", None, "An official MCNet .pth.tar instead of --workdir's checkpoints.")
  flags.DEFINE_integer("step", None, "Checkpoint step in --workdir (default: the latest).")
