"""The command line of the synthetic dataset generators (`video_set`, `speech_set`).

A generator module declares its options; `main` adds `--out` and `--workers`, takes the defaults
from the generator function's signature, calls it through its importable module (so worker
processes unpickle that module's functions rather than `__main__`'s) and prints a JSON line of
the returned dataset_info summary:

  python -m data_pipelines.synthetic.video_set --out DIR --size 64
"""
from __future__ import annotations

import importlib
import inspect
import json
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from data_pipelines.user_errors import ArgumentParser, UserInputError, check_output


class Option(NamedTuple):
  """One generator option: `--name` for the generator function's keyword `name`."""
  kind: Any  # int, float, str, bool (an on/off flag) or a tuple of choices.
  help: str | None = None


def check_args(out: str, args: Mapping[str, Any], options: Mapping[str, Option]) -> None:
  """Before generating: no negative counts or sizes, and --out a new or empty folder or an earlier
  generation (never a folder of other files)."""
  for name, option in options.items():
    if option.kind in (int, float) and args[name] is not None and args[name] < 0:
      raise UserInputError(f"--{name}={args[name]} must not be negative")
  if args.get("workers") is not None and args["workers"] < 1:
    raise UserInputError(f"--workers={args['workers']} must be >= 1")
  if not (pathlib.Path(out) / "dataset_info.json").exists():
    check_output(out, "--out", folder_ok=True)


def main(argv: Sequence[str] | None, *, module: str, function: str, description: str,
         options: Mapping[str, Option], summary_keys: Sequence[str]) -> dict[str, Any]:
  """Parses the generator's options, runs it and prints the summary; returns dataset_info.

  Args:
    argv: the arguments (None: sys.argv[1:]).
    module: the generator's importable module name (not '__main__').
    function: its `function(out_dir, **options, workers=...)` returning the dataset_info dict.
    description: the --help description.
    options: keyword -> Option; defaults come from the function's signature.
    summary_keys: dataset_info keys printed (with "out").
  """
  generate = getattr(importlib.import_module(module), function)
  defaults = inspect.signature(generate).parameters
  parser = ArgumentParser(description=description)
  parser.add_argument("--out", required=True, help="output directory")
  for name, option in options.items():
    flag, default = f"--{name}", defaults[name].default
    if option.kind is bool:
      parser.add_argument(flag, action="store_true", help=option.help)
    elif isinstance(option.kind, tuple):
      parser.add_argument(flag, choices=option.kind, default=default, help=option.help)
    else:
      parser.add_argument(flag, type=option.kind, default=default, help=option.help)
  parser.add_argument("--workers", type=int, default=None, help="default: all CPUs")
  args = vars(parser.parse_args(argv))
  out = args.pop("out")
  check_args(out, args, options)
  info = generate(out, **args)
  print(json.dumps({**{k: info[k] for k in summary_keys}, "out": str(out)}))
  sys.stdout.flush()
  return info
