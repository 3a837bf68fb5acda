"""Converts syncnet_python's `syncnet_v2.model` (a PyTorch state dict) to the `.npz` of our Flax SyncNet.

  python -m talkingmem.tools.convert_syncnet --input syncnet_v2.model --output syncnet_v2.npz

No torch needed; the key mapping is described in talkingmem/metrics/syncnet_weights.py.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from data_pipelines.user_errors import run_cli
from talkingmem.metrics import sync
from talkingmem.metrics.syncnet_weights import flat_variables, read_state_dict
from talkingmem.tools import converter_cli


def convert(input_path: str | os.PathLike, output_path: str | os.PathLike) -> int:
  """Writes the converted variables (checked against the network's shapes); returns the parameter count."""
  flat = flat_variables(read_state_dict(input_path))
  output_path = pathlib.Path(output_path)
  output_path.parent.mkdir(parents=True, exist_ok=True)
  np.savez(output_path, **{"/".join(k): v for k, v in flat.items()})
  sync.load_variables(output_path)  # Raises SyncNetWeightsError naming what does not fit.
  return int(sum(v.size for k, v in flat.items() if k[0] == "params"))


def main(argv: list[str] | None = None) -> None:
  converter_cli.run(convert, __doc__, "syncnet_v2.model (torch state dict)", "SyncNet", argv)


if __name__ == "__main__":
  run_cli(main)
