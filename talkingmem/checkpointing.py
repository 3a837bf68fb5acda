"""Orbax checkpoints of the train state together with the data iterator's state.

Checkpoints are written asynchronously into a temporary directory and renamed when complete, so a
run killed at any moment resumes from the last complete one. `keep` recent checkpoints are kept plus
every `keep_period`-th step.
"""
from __future__ import annotations

import contextlib
import json
import logging
import pathlib
from typing import Any, Iterator

import grain
import ml_collections
import orbax.checkpoint as ocp

from data_pipelines.user_errors import UserInputError
from talkingmem.console import LOG_NAME

STATE, DATA = "state", "data"
# Config fields a resumed run may change: how long it trains, how often it logs, evaluates and saves,
# and how (not what) data is read. Any other difference would continue old weights under a new recipe.
SAFE_RESUME_OVERRIDES = frozenset((
    "train.num_steps", "train.num_epochs", "train.log_every", "train.eval_every", "train.image_every",
    "train.video_every", "train.checkpoint_every", "train.keep_checkpoints", "train.keep_period",
    "train.eval_batches", "train.async_checkpoints", "train.final_outputs", "train.num_devices",
    "data.read_threads", "data.worker_count", "data.decoded_cache_mb"))


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


def saved_steps(workdir: str | pathlib.Path) -> list[int]:
  """The complete checkpoint steps in workdir (Orbax's temporary folders are not steps), ascending."""
  folder = checkpoint_dir(workdir)
  if not folder.is_dir():
    return []
  return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
  return {prefix[:-1]: tree}


def check_resume(workdir: str | pathlib.Path, config: ml_collections.ConfigDict) -> list[str]:
  """The safe fields in which `config` differs from the workdir's saved one, before a resumed run.

  A workdir without checkpoints (new, or left by a run that failed before its first save) is fresh:
  any config is accepted there. Otherwise a difference outside SAFE_RESUME_OVERRIDES is refused with
  a UserInputError naming the differing fields (fields new to the code since that run are accepted).
  """
  path = pathlib.Path(workdir) / "config.json"
  if pathlib.Path(workdir).exists() and not pathlib.Path(workdir).is_dir():
    raise UserInputError(f"--workdir={workdir} is a file, not a folder; give a folder for the run")
  # The run's own log (console.LOG_NAME) is opened before this check, so it does not count as "other files".
  others = [f for f in pathlib.Path(workdir).iterdir() if f.name != LOG_NAME] if pathlib.Path(workdir).is_dir() else []
  if not path.exists() and others:
    raise UserInputError(f"--workdir={workdir} holds other files and no config.json, so it is not a "
                         "training run's folder; give a new or empty folder (nothing in it was changed)")
  if not path.exists() or not saved_steps(workdir):
    return []
  old = _flat(json.loads(path.read_text()))
  new = _flat(json.loads(config.to_json_best_effort()))
  missing = "(unset)"
  differ = sorted(k for k in old.keys() | new.keys() if old.get(k, missing) != new.get(k, missing))
  # Fields the saved config lacks are settings added to the code since that run: their defaults apply.
  unsafe = [k for k in differ if k not in SAFE_RESUME_OVERRIDES and k in old]
  if unsafe:
    shown = ", ".join(f"{k}: {old.get(k, missing)!r} -> {new.get(k, missing)!r}" for k in unsafe[:8])
    more = f" and {len(unsafe) - 8} more" if len(unsafe) > 8 else ""
    raise UserInputError(
        f"--workdir={workdir} holds a run trained with another config ({len(unsafe)} fields differ: "
        f"{shown}{more}); use a new --workdir, or the workdir's own config (a resumed run may change only "
        f"{', '.join(sorted(SAFE_RESUME_OVERRIDES))})")
  return differ


def load_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
  path = pathlib.Path(workdir) / "config.json"
  if not path.exists():
    raise UserInputError(f"{path} not found: is {workdir} a talkingmem workdir (it has checkpoints/ "
                         "and config.json after training)?")
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text()))
  except (ValueError, UnicodeDecodeError) as e:
    raise UserInputError(f"{path} is not valid JSON ({e}); restore it from the run's own config") from e


def restore_readable(manager: ocp.CheckpointManager, step: int, steps: list[int],
                     workdir: str | pathlib.Path) -> Any:
  """The raw state of `step`; a damaged checkpoint is one line naming the step and the others.

  Any failure to read the files of an existing step means damaged files (a truncated or corrupted
  array, a half-copied folder): Orbax's own errors come from its async readers, hundreds of lines
  that do not name the step, so they are logged at debug level only.
  """
  try:
    with _quiet_orbax():
      return manager.restore(step, args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore()}))[STATE]
  except Exception as e:  # pylint: disable=broad-except  (see the docstring)
    others = [s for s in steps if s != step]
    hint = (f"try an older one with --step= ({', '.join(map(str, others))})" if others
            else "it is the only one, so the run must be trained again")
    logging.debug("restoring step %d of %s failed", step, workdir, exc_info=True)
    raise UserInputError(f"checkpoint step {step} in {checkpoint_dir(workdir)} is unreadable "
                         f"({type(e).__name__}); {hint}") from None


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
  """Orbax's and asyncio's error logs muted for the duration (the failure is reported once)."""
  loggers = [logging.getLogger(name) for name in ("absl", "asyncio", "orbax")]
  levels = [lg.level for lg in loggers]
  for lg in loggers:
    lg.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    for lg, level in zip(loggers, levels):
      lg.setLevel(level)


def load_variables(workdir: str | pathlib.Path, step: int | None = None) -> tuple[dict, ml_collections.ConfigDict, int]:
  """Model variables (params and other collections) of a training run, without the optimizer state."""
  config = load_config(workdir)
  # Orbax warns on every read-only open ("Given directory is read only", and once per option it
  # overrides); a reader expects exactly that, so those lines are noise on the terminal. Opening raises on a
  # real problem; the restore below keeps its own logs.
  options = ocp.CheckpointManagerOptions(read_only=True, save_interval_steps=0, create=False)
  with _quiet_orbax():
    manager = ocp.CheckpointManager(checkpoint_dir(workdir).absolute(), item_names=(STATE, DATA),
                                    options=options)
  steps = saved_steps(workdir)
  if not steps:
    raise UserInputError(f"no checkpoint in {checkpoint_dir(workdir)}; train first, or give another "
                         "--workdir")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise UserInputError(f"--step={step}: no such checkpoint in {workdir}; its steps are "
                         f"{', '.join(map(str, steps))}")
  state = restore_readable(manager, step, steps, workdir)
  variables = {"params": state["params"], **state["model_state"]}
  return variables, config, step
