"""Checks a run's config once, when it is loaded, so that a bad value is one clear line, not a
ZeroDivisionError deep in a model or a TypeError in the trainer (every mode calls `validate_config`).

Only the fields a config has are checked: the rules cover every task's configs (MCNet, MemFace).
"""
from __future__ import annotations

import numbers
from typing import Any, Callable

import ml_collections

from data_pipelines.user_errors import UserInputError

_MISSING = object()


def _whole(minimum: int) -> Callable[[Any], bool]:
  return lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum


def _positive(v: Any) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0


def _fraction(v: Any) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= v < 1


# (dotted field, test, what it must be); None passes wherever `optional` says so.
RULES: tuple[tuple[str, Callable[[Any], bool], str, bool], ...] = (
    ("task", lambda v: isinstance(v, str) and bool(v), "a task name", False),
    ("seed", _whole(0), "an integer >= 0", False),
    ("model.image_size", _whole(8), "an integer >= 8", False),
    ("model.num_channels", _whole(1), "an integer >= 1", False),
    ("model.num_kp", _whole(1), "an integer >= 1 (the number of keypoints)", False),
    ("data.image_size", _whole(8), "an integer >= 8", False),
    ("data.batch_size", _whole(1), "an integer >= 1", False),
    ("data.eval_batch_size", _whole(1), "an integer >= 1", False),
    ("data.eval_chunk_size", _whole(1), "an integer >= 1", False),
    ("data.num_repeats", _whole(1), "an integer >= 1", False),
    ("data.worker_count", _whole(0), "an integer >= 0", False),
    ("data.read_threads", _whole(0), "an integer >= 0", False),
    ("data.decoded_cache_mb", lambda v: isinstance(v, numbers.Real) and v >= 0, "a number >= 0", False),
    ("data.test_fraction", _fraction, "a number in [0, 1)", False),
    ("data.root", lambda v: isinstance(v, str) and bool(v), "a folder path", False),
    ("train.num_steps", _whole(1), "an integer >= 1 (or unset, to train num_epochs)", True),
    ("train.num_epochs", _positive, "a number > 0 (or unset, when num_steps is set)", True),
    ("train.log_every", _whole(1), "an integer >= 1", False),
    ("train.checkpoint_every", _whole(1), "an integer >= 1", False),
    ("train.keep_checkpoints", _whole(1), "an integer >= 1", False),
    ("train.eval_batches", _whole(1), "an integer >= 1 (or unset: all)", True),
    ("train.num_devices", _whole(1), "an integer >= 1 (or unset: all devices)", True),
    ("optim.learning_rate", _positive, "a number > 0", False),
    ("eval.num_videos", _whole(1), "an integer >= 1 (or unset: all)", True),
)


def _get(config: ml_collections.ConfigDict, dotted: str) -> Any:
  node: Any = config
  for key in dotted.split("."):
    if not hasattr(node, "get"):
      return _MISSING
    node = node.get(key, _MISSING)
    if node is _MISSING:
      return _MISSING
  return node


def validate_config(config: ml_collections.ConfigDict | None, mode: str = "train"
                    ) -> ml_collections.ConfigDict:
  """`config` if every checked field is valid; otherwise a UserInputError naming every bad field."""
  if config is None:
    raise UserInputError(f"--mode={mode} needs --config=configs/<task>.py[:variant]")
  problems = []
  for dotted, test, wanted, optional in RULES:
    value = _get(config, dotted)
    if value is _MISSING or (value is None and optional):
      continue
    if not test(value):
      problems.append(f"--config.{dotted}={value!r} must be {wanted}")
  train = config.get("train")
  no_length = train is not None and not train.get("num_steps") and not train.get("num_epochs")
  if no_length and "num_steps" in train:
    problems.append("set --config.train.num_steps or --config.train.num_epochs")
  if problems:
    raise UserInputError("invalid config: " + "; ".join(problems))
  return config
