"""The embedded synthetic datasets, generated into data.root on first use (every task's default data).

Process 0 generates; with several processes every one of them meets at a barrier (always, so that a
process that finds the data already written cannot skip it), assuming a shared filesystem.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Callable, Mapping

from absl import logging
import jax

INFO_FILE = "dataset_info.json"


def check_synthetic_info(info: Mapping[str, Any], wanted: Mapping[str, Any], root: pathlib.Path) -> None:
  """Refuses a cached synthetic dataset made with other settings than the config asks."""
  differ = {k: (info.get(k), v) for k, v in wanted.items() if k in info and info[k] != v}
  if differ:
    detail = ", ".join(f"{k}: on disk {a!r}, config {b!r}" for k, (a, b) in sorted(differ.items()))
    raise ValueError(f"{root} holds a synthetic dataset generated with other settings ({detail}). "
                     "Delete that folder to regenerate it, or set --config.data.root to another folder.")


def ensure_synthetic(root: str | pathlib.Path, wanted: Mapping[str, Any],
                     generate: Callable[[pathlib.Path], Mapping[str, Any]], what: str) -> None:
  """Calls `generate(root)` once, unless root already holds a set made with the `wanted` settings."""
  root = pathlib.Path(root)
  info_path = root / INFO_FILE
  if info_path.exists():
    check_synthetic_info(json.loads(info_path.read_text()), wanted, root)
  if jax.process_index() == 0 and not info_path.exists():
    logging.info("Generating the synthetic %s into %s (first run only)", what, root)
    print(f"generating the synthetic {what} into {root} (first run only) ...", flush=True)  # a quiet wait
    info = generate(root)
    logging.info("synthetic %s: %s", what, info)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f"synthetic {what}")
