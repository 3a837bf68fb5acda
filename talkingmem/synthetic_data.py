"""The embedded synthetic datasets, generated into data.root on first use (every task's default data).

Generated only into a data.root that does not exist yet or is empty (as the configs' own roots start),
through a temporary sibling renamed into place, so an interrupted generation leaves nothing half-made.
A root holding anything else is the user's data: never written into, read as it is (and refused by the
data layer when it holds no usable videos).

Process 0 generates; with several processes every one of them meets at a barrier (always, so that a
process that finds the data already written cannot skip it), assuming a shared filesystem.
"""
from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any, Callable, Mapping

from absl import logging
import jax

from data_pipelines.user_errors import UserInputError

INFO_FILE = "dataset_info.json"


def check_synthetic_info(info: Mapping[str, Any], wanted: Mapping[str, Any], root: pathlib.Path,
                         absent: Mapping[str, Any] | None = None) -> None:
  """Refuses a cached synthetic dataset made with other settings than the config asks.

  absent: the value a setting had before sets recorded it (a set made before `head_motion` existed
  was made with 1.0); other settings missing from the set's info are not compared.
  """
  info = {**(absent or {}), **info}
  differ = {k: (info.get(k), v) for k, v in wanted.items() if k in info and info[k] != v}
  if differ:
    detail = ", ".join(f"{k}: on disk {a!r}, config {b!r}" for k, (a, b) in sorted(differ.items()))
    raise UserInputError(f"{root} holds a synthetic dataset generated with other settings ({detail}). "
                     "Delete that folder to regenerate it, or set --config.data.root to another folder.")


def ensure_synthetic(root: str | pathlib.Path, wanted: Mapping[str, Any],
                     generate: Callable[[pathlib.Path], Mapping[str, Any]], what: str,
                     absent: Mapping[str, Any] | None = None) -> None:
  """Calls `generate(root)` once, unless root already holds a set made with the `wanted` settings."""
  root = pathlib.Path(root)
  info_path = root / INFO_FILE
  if root.exists() and not root.is_dir():
    raise UserInputError(f"--config.data.root={root} is a file; give a dataset folder")
  if info_path.exists():
    check_synthetic_info(json.loads(info_path.read_text()), wanted, root, absent)
  elif root.is_dir() and any(root.iterdir()):
    logging.info("%s holds no synthetic set but other files: reading it as the user's data", root)
  elif jax.process_index() == 0:
    logging.info("Generating the synthetic %s into %s (first run only)", what, root)
    print(f"generating the synthetic {what} into {root} (first run only) ...", flush=True)  # a quiet wait
    tmp = root.with_name(f".{root.name}.generating")
    if tmp.exists():
      shutil.rmtree(tmp)  # Left by an interrupted generation.
    info = generate(tmp)
    if root.exists():
      root.rmdir()  # Empty, as checked above.
    tmp.rename(root)
    logging.info("synthetic %s: %s", what, info)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f"synthetic {what}")
