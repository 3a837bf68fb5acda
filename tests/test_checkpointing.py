"""Loading a training run's variables: what reaches the person's terminal."""
from __future__ import annotations

import logging

import numpy as np

from talkingmem import checkpointing


def test_loading_variables_logs_no_read_only_warnings(tmp_path, caplog):
  # Orbax warns three times on every read-only open; every eval, animate and figure command loads this way.
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / "config.json").write_text("{}")
  manager = checkpointing.make_manager(workdir, keep=1, async_save=False)
  state = {"params": {"w": np.arange(8, dtype=np.float32)}, "model_state": {}, "step": np.int32(0)}
  checkpointing.save(manager, 1, state, None, force=True)
  manager.wait_until_finished()
  manager.close()
  with caplog.at_level(logging.WARNING):
    variables, _, step = checkpointing.load_variables(workdir)
  assert step == 1 and np.array_equal(variables["params"]["w"], np.arange(8))
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  assert warnings == []
