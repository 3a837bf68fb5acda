"""Orbax checkpoints of the train state together with the data iterator's state.

Checkpoints are written asynchronously into a temporary directory and renamed when complete, so a
run killed at any moment resumes from the last complete one. `keep` recent checkpoints are kept plus
every `keep_period`-th step.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any

import grain
import ml_collections
import orbax.checkpoint as ocp

STATE, DATA = "state", "data"


def checkpoint_dir(workdir: str | pathlib.Path) -> pathlib.Path:
  return pathlib.Path(workdir) / "checkpoints"


def make_manager(workdir: str | pathlib.Path, keep: int = 3, keep_period: int | None = None,
                 async_save: bool = True) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, keep_period=keep_period, create=True,
                                         enable_async_checkpointing=async_save,
                                         cleanup_tmp_directories=True)
  return ocp.CheckpointManager(checkpoint_dir(workdir).absolute(), options=options,
                               item_names=(STATE, DATA))


def save(manager: ocp.CheckpointManager, step: int, state: Any, data_iterator: Any | None,
         force: bool = False) -> bool:
  items = {STATE: ocp.args.StandardSave(state)}
  if data_iterator is not None:
    items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
  return manager.save(step, args=ocp.args.Composite(**items), force=force)


def restore(manager: ocp.CheckpointManager, abstract_state: Any, data_iterator: Any | None,
            step: int | None = None) -> tuple[int, Any] | None:
  """(step, state) from the latest (or given) checkpoint, restoring the iterator in place; or None."""
  step = manager.latest_step() if step is None else step
  if step is None:
    return None
  items = {STATE: ocp.args.StandardRestore(abstract_state)}
  if data_iterator is not None and (pathlib.Path(manager.directory) / str(step) / DATA).exists():
    items[DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
  restored = manager.restore(step, args=ocp.args.Composite(**items))
  return step, restored[STATE]


def save_config(workdir: str | pathlib.Path, config: ml_collections.ConfigDict) -> None:
  """The run's config beside its checkpoints, so eval/animate/export can rebuild the model."""
  path = pathlib.Path(workdir) / "config.json"
  tmp = path.with_suffix(".json.tmp")
  tmp.write_text(config.to_json_best_effort(indent=1, sort_keys=True))
  tmp.replace(path)


def load_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
  path = pathlib.Path(workdir) / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{path} not found: is {workdir} a talkingmem workdir (it has checkpoints/ "
                            "and config.json after training)?")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def load_variables(workdir: str | pathlib.Path, step: int | None = None) -> tuple[dict, ml_collections.ConfigDict, int]:
  """Model variables (params and other collections) of a training run, without the optimizer state."""
  config = load_config(workdir)
  manager = ocp.CheckpointManager(checkpoint_dir(workdir).absolute(), item_names=(STATE, DATA),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {checkpoint_dir(workdir)}")
  restored = manager.restore(step, args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore()}))
  state = restored[STATE]
  variables = {"params": state["params"], **state["model_state"]}
  return variables, config, step
