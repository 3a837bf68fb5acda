"""The interface a paper implements to train with `talkingmem.train` (one trainer for all papers).

A Task owns its model, losses, optimizer and data; the trainer owns devices, sharding, the jit step,
checkpoints, writers and the loop. Randomness reaches a task only through the `rng` it is given.
"""
from __future__ import annotations

import abc
import importlib
from typing import Any, Iterable, Iterator, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from data_pipelines.user_errors import UserInputError

Batch = Mapping[str, Any]
Variables = dict[str, Any]  # {'params': ..., other collections (e.g. 'batch_stats')}

# Task name (config.task) -> "module:Class"; imported lazily so the trainer imports no paper.
TASKS = {
    "mcnet": "talkingmem.mcnet.task:MCNetTask",
    "memface_a2e": "talkingmem.memface.tasks:AudioToExpressionTask",
    "memface_renderer": "talkingmem.memface.renderer_task:RendererTask",
}


class Task(abc.ABC):
  """What the trainer needs from a paper."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self._jitted: dict[str, Any] = {}

  def jitted(self, name: str, fn):
    """One compiled function per name for the task's lifetime (host-side calls, not the step)."""
    if name not in self._jitted:
      self._jitted[name] = jax.jit(fn)
    return self._jitted[name]

  def mean_eval_metrics(self, variables: Variables, batches: Iterable[Batch]) -> dict[str, float]:
    """Means of `eval_metrics` over the valid examples of `batches` (numeric entries only)."""
    metric_fn = self.jitted("eval_metrics", self.eval_metrics)

    def per_example():
      for batch in batches:
        numeric = {k: jnp.asarray(v) for k, v in batch.items() if np.asarray(v).dtype.kind in "biuf"}
        yield jax.device_get(metric_fn(variables, numeric))

    means, count = valid_weighted_means(per_example())
    return means | {"num_frames": int(count)}

  # -- data (host side, numpy) --------------------------------------------------------------
  @abc.abstractmethod
  def train_data(self, process_index: int, process_count: int) -> Iterable[Batch]:
    """This process's share of each global training batch; a grain dataset (iterator state)."""

  @abc.abstractmethod
  def eval_batches(self, process_index: int, process_count: int) -> Iterator[Batch]:
    """Held-out local batches for periodic evaluation (a fresh, finite iterator per call)."""

  # -- model (device side, jit-able) --------------------------------------------------------
  @abc.abstractmethod
  def init_variables(self, rng: jax.Array, batch: Batch) -> Variables:
    """All variables; 'params' are trained, other collections are carried as model state."""

  @abc.abstractmethod
  def optimizer(self, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer over 'params' and the learning-rate schedule (for logging)."""

  @abc.abstractmethod
  def loss(self, params: Any, model_state: Variables, batch: Batch, rng: jax.Array,
           step: jax.Array) -> tuple[jax.Array, tuple[dict[str, jax.Array], Variables]]:
    """Scalar loss, (scalar metrics, updated model state), in training mode."""

  @abc.abstractmethod
  def eval_metrics(self, variables: Variables, batch: Batch) -> dict[str, jax.Array]:
    """Per-example metric values (leading axis = batch) in evaluation mode."""

  def steps_per_epoch(self) -> int:
    """Global steps in one epoch, for configs that give num_epochs instead of num_steps."""
    raise NotImplementedError(f"{type(self).__name__} needs config.train.num_steps")

  def summaries(self, variables: Variables, batch: Batch) -> dict[str, jax.Array]:
    """Images (N, H, W, C) in [0, 1] to write, e.g. a row of source | driving | prediction."""
    del variables, batch
    return {}

  def write_samples(self, variables: Variables, step: int, workdir: str) -> str | None:
    """Host-side samples written every `train.video_every` steps (e.g. a short video); their path."""
    del variables, step, workdir
    return None

  def after_training(self, variables: Variables, workdir: str) -> dict[str, Any]:
    """Host-side outputs when training ends (reports, animations); returns a summary."""
    del variables, workdir
    return {}


def valid_weighted_means(per_example: Iterable[dict[str, Any]]) -> tuple[dict[str, float], float]:
  """({metric: mean over valid examples}, number of valid examples) of per-example metric batches.

  Each batch maps metric names to arrays with a leading example axis; its optional "valid" entry
  (padding is False) weights the examples, all valid without it. An optional "weights" entry maps
  some metric names to their own per-example weights (e.g. 0 where a masked metric has no pixels),
  which multiply "valid" for that metric; such a metric with no weight anywhere is NaN.
  """
  sums: dict[str, float] = {}
  weight_sums: dict[str, float] = {}
  weighted: set[str] = set()
  count = 0.0
  for metrics in per_example:
    metrics = dict(metrics)
    own_weights = metrics.pop("weights", {})
    weighted.update(own_weights)
    size = len(np.asarray(next(iter(metrics.values()))))
    valid = np.asarray(metrics.pop("valid", np.ones(size)), np.float64)
    count += valid.sum()
    for k, v in metrics.items():
      w = valid * np.asarray(own_weights[k], np.float64) if k in own_weights else valid
      sums[k] = sums.get(k, 0.0) + float(np.sum(np.asarray(v, np.float64) * w))
      weight_sums[k] = weight_sums.get(k, 0.0) + float(w.sum())
  return {k: (float("nan") if k in weighted and weight_sums[k] == 0 else v / max(weight_sums[k], 1.0))
          for k, v in sums.items()}, count


def get_task(config: ml_collections.ConfigDict) -> Task:
  if config.task not in TASKS:
    raise UserInputError(f"unknown --config.task={config.task!r}; choose one of {sorted(TASKS)}")
  module, cls = TASKS[config.task].split(":")
  return getattr(importlib.import_module(module), cls)(config)
