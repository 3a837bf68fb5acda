"""experiments/results_file.py: the atomic writes every experiment script's outputs go through."""
from __future__ import annotations

import importlib.util
import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_file", REPO / "experiments" / "results_file.py")
results_file = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_file)


def test_write_atomic_leaves_the_mode_a_plain_write_would(tmp_path):
  old_mask = os.umask(0o022)
  try:
    new = tmp_path / "new.md"
    results_file.write_atomic(new, "a\n")
    assert new.read_text() == "a\n" and new.stat().st_mode & 0o777 == 0o644  # mkstemp alone gives 0600
    kept = tmp_path / "kept.md"
    kept.write_text("old\n")
    kept.chmod(0o640)
    results_file.write_atomic(kept, "new\n")
    assert kept.read_text() == "new\n" and kept.stat().st_mode & 0o777 == 0o640
  finally:
    os.umask(old_mask)
  assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind
