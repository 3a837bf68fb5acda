"""One error type for "the user's input is wrong", and the one place that prints it.

Every entry point (`talkingmem.main` and each `python -m` tool) runs through `run_cli`: a
UserInputError becomes one line `error: <message>` on stderr and exit code 2, before or instead of any
work; every other exception is a programming error and keeps its traceback. Defined here, at the
lowest layer, so that data_pipelines (which never imports talkingmem) raises the same type.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import Any, Callable, Iterable, NoReturn

EXIT_CODE = 2


class UserInputError(ValueError):
  """An input the user can fix; the message names the input, the problem and what to do."""


def one_line(message: object) -> str:
  """The message with its lines joined by '; ' (multi-line reports still print as one line)."""
  return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def error_text(error: BaseException) -> str:
  """One line from an exception: nested first arguments unwrapped (ml_collections wraps the KeyError of
  a config typo in an AttributeError), and of a message that pastes a whole traceback (config-file
  errors) only its first line and the last one's message."""
  while error.args and isinstance(error.args[0], BaseException):
    error = error.args[0]
  text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if any(line.startswith("Traceback") for line in lines):
    kind, _, message = lines[-1].partition(": ")
    lines = [lines[0].rstrip(":"), message if kind.endswith(("Error", "Exception")) else lines[-1]]
  return one_line("\n".join(lines))


def exit_with(message: object) -> None:
  """Prints `error: <message>` as one line on stderr and exits with EXIT_CODE."""
  print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
  sys.exit(EXIT_CODE)


def run_cli(main: Callable[[], Any]) -> Any:
  """Runs a command-line main; a UserInputError becomes one line on stderr and exit code 2."""
  try:
    return main()
  except UserInputError as e:
    exit_with(e)


def parse_absl_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing with a bad flag as a UserInputError (absl's own prints two lines, exit 1)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    raise UserInputError(f"{error_text(e)} (see --helpshort)") from e


def run_absl(main: Callable[[list[str]], Any]) -> None:
  """`absl.app.run(main)` for a `python -m` tool, through run_cli and parse_absl_flags."""
  from absl import app  # pylint: disable=g-import-not-at-top
  run_cli(lambda: app.run(main, flags_parser=parse_absl_flags))


def require(condition: bool, message: str) -> None:
  """Raises UserInputError(message) unless condition holds (argument checks before any work)."""
  if not condition:
    raise UserInputError(message)


def existing_file(path: str | os.PathLike, flag: str) -> pathlib.Path:
  """`path` as a Path if it is a file; otherwise a UserInputError naming `flag` and what the path is."""
  path = pathlib.Path(path)
  if path.is_dir():
    raise UserInputError(f"{flag}={path} is a folder, not a file; give the file itself")
  if not path.is_file():
    raise UserInputError(f"{flag}={path} does not exist; check the path")
  return path


def check_output(path: str | os.PathLike, flag: str, inputs: Iterable[str | os.PathLike | None] = (),
                 suffixes: Iterable[str] | None = None, folder_ok: bool = False) -> pathlib.Path:
  """Refuses, before any work, an output that would destroy something or could not be written.

  Refused: the same path as any input; an existing folder that is not empty (or any folder unless
  `folder_ok`); a suffix outside `suffixes` (when given; "" stands for a folder); a parent folder that
  cannot be created or written. Outputs are then written to a temporary sibling and renamed into place.
  """
  path = pathlib.Path(path)
  resolved = path.resolve()
  for given in inputs:
    if given and pathlib.Path(given).resolve() == resolved:
      raise UserInputError(f"{flag}={path} is also an input; choose another output path")
  if path.is_dir():
    if not folder_ok:
      raise UserInputError(f"{flag}={path} is an existing folder; give a new file name")
    if any(path.iterdir()):
      raise UserInputError(f"{flag}={path} is a folder that is not empty; give a new or empty folder "
                           "(nothing in it was changed)")
  elif path.exists() and folder_ok and path.suffix == "" and suffixes is not None and "" in suffixes:
    raise UserInputError(f"{flag}={path} is an existing file; give a folder path")
  if suffixes is not None:
    allowed = tuple(suffixes)
    suffix = "" if path.is_dir() else path.suffix.lower()
    if suffix not in allowed:
      names = ", ".join(s or "a folder" for s in allowed)
      raise UserInputError(f"{flag}={path}: unsupported output format {suffix or '(none)'!r}; use {names}")
  check_writable(resolved.parent, flag, path)
  return path


def check_writable(folder: str | os.PathLike, flag: str, given: str | os.PathLike | None = None) -> None:
  """Refuses a folder (or its nearest existing parent, where it will be created) that cannot be
  written; `given` is the path as the user wrote it, for the message."""
  existing = pathlib.Path(folder).resolve()
  while not existing.exists() and existing != existing.parent:
    existing = existing.parent
  if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
    raise UserInputError(f"{flag}={given or folder}: cannot write into {existing} (permission denied or "
                         "not a folder); choose a writable location")


class ArgumentParser(argparse.ArgumentParser):
  """argparse whose usage errors are UserInputErrors (one line through run_cli, not usage + error)."""

  def error(self, message: str) -> NoReturn:
    raise UserInputError(f"{message} (see --help)")
