"""Converts torchvision's VGG19 weights to the `.npz` our perceptual loss loads (no torch needed).

  python -m talkingmem.tools.convert_vgg19 --input vgg19-dcbb9e9d.pth --output vgg19.npz

Only the 13 convolutions the loss uses are kept (12.9M parameters, 52 MB instead of 548 MB), in our
names and HWIO layout.
"""
from __future__ import annotations

import os
import pathlib

from absl import app, flags
import numpy as np

from talkingmem.nn import vgg

_INPUT = flags.DEFINE_string("input", None, f"torchvision {vgg.WEIGHTS_FILE} (or an .npz)")
_OUTPUT = flags.DEFINE_string("output", None, "where to write the converted .npz")


def convert(input_path: str | os.PathLike[str], output_path: str | os.PathLike[str]) -> int:
  """Writes the converted params to `output_path`; returns the number of parameters."""
  params = vgg.load_vgg19_params(input_path)
  flat = vgg.flatten_params(params)
  output_path = pathlib.Path(output_path)
  output_path.parent.mkdir(parents=True, exist_ok=True)
  np.savez(output_path, **flat)
  return sum(v.size for v in flat.values())


def main(argv: list[str]) -> None:
  del argv
  count = convert(_INPUT.value, _OUTPUT.value)
  print(f"wrote {_OUTPUT.value}: {count / 1e6:.2f}M VGG19 parameters")


if __name__ == "__main__":
  flags.mark_flags_as_required(["input", "output"])
  app.run(main)
