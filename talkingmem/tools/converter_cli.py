"""The command line shared by the weight converters: `--input FILE --output FILE.npz`.

argparse rather than absl flags: the converters are imported as libraries (tests, notebooks), and
module-level absl flags with the same names would collide there.
"""
from __future__ import annotations

import argparse
import os
from typing import Callable, Sequence

from data_pipelines.user_errors import ArgumentParser, check_output, existing_file

Convert = Callable[[str | os.PathLike[str], str | os.PathLike[str]], int]


def run(convert: Convert, description: str, input_help: str, what: str,
        argv: Sequence[str] | None = None) -> None:
  """Parses argv, converts, and prints what was written (`what`: e.g. 'VGG19')."""
  parser = ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--input", required=True, help=input_help)
  parser.add_argument("--output", required=True, help="where to write the converted .npz")
  args = parser.parse_args(argv)
  existing_file(args.input, "--input")
  check_output(args.output, "--output", (args.input,), (".npz",))
  count = convert(args.input, args.output)
  print(f"wrote {args.output}: {count / 1e6:.2f}M {what} parameters")
