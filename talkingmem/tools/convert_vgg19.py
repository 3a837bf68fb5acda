"""Converts torchvision's VGG19 weights to the `.npz` our perceptual loss loads (no torch needed).

  python -m talkingmem.tools.convert_vgg19 --input vgg19-dcbb9e9d.pth --output vgg19.npz

Only the 13 convolutions the loss uses are kept (12.9M parameters, 52 MB instead of 548 MB), in our
names and HWIO layout.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from data_pipelines.user_errors import run_cli
from talkingmem.nn import vgg
from talkingmem.tools import converter_cli



def convert(input_path: str | os.PathLike[str], output_path: str | os.PathLike[str]) -> int:
  """Writes the converted params to `output_path`; returns the number of parameters."""
  params = vgg.load_vgg19_params(input_path)
  flat = vgg.flatten_params(params)
  output_path = pathlib.Path(output_path)
  output_path.parent.mkdir(parents=True, exist_ok=True)
  np.savez(output_path, **flat)
  return sum(v.size for v in flat.values())


def main(argv: list[str] | None = None) -> None:
  converter_cli.run(convert, __doc__, f"torchvision {vgg.WEIGHTS_FILE} (or an .npz)", "VGG19", argv)


if __name__ == "__main__":
  run_cli(main)
