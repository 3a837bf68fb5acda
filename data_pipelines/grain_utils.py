"""What every Grain pipeline here shares (fomm/pipelines.py, speech/pipelines.py,
speech/renderer_pipelines.py).

  resolve_process       this process's (index, count) among the JAX processes
  local_batch_size      its share of a global batch
  padded_shard          its share of evaluation elements padded to whole global batches
  train_slot_dataset    shuffled training slots, per epoch, dealt in blocks to the processes
  ExampleFromSlot       (key, slot) -> source.example(slot, key), the training map of a slot source
  to_iter_dataset       threads in this process, then (optionally) worker processes
  config_from           a settings dataclass from a dataclass, dict, ConfigDict or attribute object
  PerProcessStateMixin  stores pickled into Grain workers without locks / open readers / caches
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from absl import flags
import cv2
import grain
import jax
import numpy as np

ConfigT = TypeVar("ConfigT")
T = TypeVar("T")


def resolve_process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  """(index, count) of this process: the given values, or JAX's (`jax.process_index()` / count)."""
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if not 0 <= index < count:
    raise ValueError(f"process_index {index} not in [0, {count})")
  return index, count


def local_batch_size(global_batch: int, process_count: int, what: str = "global batch") -> int:
  """The batch each process makes of a global batch (which must split evenly)."""
  if global_batch % process_count:
    raise ValueError(f"{what} {global_batch} not divisible by {process_count} processes")
  return global_batch // process_count


def padded_shard(elements: Sequence[T], padding: T, global_batch: int, process_index: int,
                 process_count: int) -> list[T]:
  """This process's elements (round-robin) after padding all of them with `padding` to whole
  global batches, so every process makes the same number of full batches."""
  padded = list(elements) + [padding] * (-len(elements) % global_batch)
  return padded[process_index::process_count]


def config_from(config_type: type[ConfigT], config: Any, tuple_fields: Iterable[str] = ()
                ) -> ConfigT:
  """`config_type` (a dataclass) from itself, a dict, a ConfigDict or any attribute object.

  Fields the source lacks keep their defaults and keys the dataclass lacks are ignored. Lists (or
  tuples) in `tuple_fields` become tuples, so the result is hashable there and compares equal
  whatever the source held (ConfigDicts and JSON give lists).
  """
  if isinstance(config, config_type):
    return config
  values = {}
  for field in dataclasses.fields(config_type):
    if isinstance(config, Mapping):
      if field.name in config:
        values[field.name] = config[field.name]
    elif hasattr(config, field.name):
      values[field.name] = getattr(config, field.name)
  for name in tuple_fields:
    if isinstance(values.get(name), (list, tuple)):
      values[name] = tuple(values[name])
  return config_type(**values)


class PerProcessStateMixin:
  """Pickles without per-process state, which unpickling recreates.

  Grain pickles a pipeline's store into each worker process: locks cannot be pickled, open readers
  are reopened there and decoded caches would cost more to ship than to refill. A subclass returns
  those attributes' fresh values from `per_process_state()`; its `__init__` may set them from it.
  """

  def per_process_state(self) -> dict[str, Any]:
    """Attribute name -> the value a freshly unpickled copy starts with."""
    return {}

  def __getstate__(self) -> dict[str, Any]:
    fresh = self.per_process_state()
    return {k: v for k, v in self.__dict__.items() if k not in fresh}

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__dict__.update(state)
    self.__dict__.update(self.per_process_state())


# --------------------------------------------------------------------------------------------------
# Training slots.


class KeyBySlot(grain.transforms.MapWithIndex):
  """slot -> (global position, slot): the position seeds the example."""

  def map_with_index(self, index: int, slot: int) -> tuple[int, int]:
    return int(index), int(slot)


class _ProcessBlocks(grain.MapDataset):
  """Process p's rows of every global batch: positions b*G + p*L + o for o < L (G = count * L).

  jax.make_array_from_process_local_data puts process p's local batch at rows [p*L, (p+1)*L) of the
  global batch, so every global batch holds the same examples in the same rows whatever the process
  count (position-dependent randomness, e.g. equivariance transforms, then matches too).
  """

  def __init__(self, parent: grain.MapDataset, index: int, count: int, local_batch: int):
    super().__init__(parent)
    self._index, self._count, self._local = index, count, local_batch

  def __len__(self) -> int:
    return len(self.parents[0]) // (self._count * self._local) * self._local

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    batch, offset = divmod(index, self._local)
    return self.parents[0][(batch * self._count + self._index) * self._local + offset]


def train_slot_dataset(num_slots: int, *, seed: int, process_index: int,
                       process_count: int, num_epochs: int | None = None,
                       local_batch: int = 1) -> grain.MapDataset:
  """(global position, slot) pairs read by one process.

  Slots are shuffled anew each epoch (same order on every process, same seed)
  and each global batch of process_count * local_batch positions is dealt in
  contiguous blocks of local_batch (local_batch=1: round-robin), so the
  processes read disjoint positions that together cover every slot of every
  epoch, and each global batch is the same whatever the process count.
  """
  ds = grain.MapDataset.range(num_slots).seed(seed).shuffle()
  ds = ds.repeat(num_epochs).map_with_index(KeyBySlot())
  return _ProcessBlocks(ds, process_index, process_count, local_batch)


class SlotSource(Protocol):
  """A random-access training source: the example of `slot` drawn with the generator of `key`."""

  def example(self, slot: int, key: int) -> dict[str, np.ndarray]: ...


class ExampleFromSlot(grain.transforms.Map):
  """(key, slot) of `train_slot_dataset` -> `source.example(slot, key)` (a Grain map transform)."""

  def __init__(self, source: SlotSource):
    self._source = source

  def map(self, element: tuple[int, int]) -> dict[str, np.ndarray]:
    key, slot = element
    return self._source.example(slot, key)


# --------------------------------------------------------------------------------------------------
# Iteration.


def _init_worker(worker_index: int, worker_count: int) -> None:
  del worker_index, worker_count
  cv2.setNumThreads(1)  # Parallelism comes from the workers themselves.


def to_iter_dataset(ds: grain.MapDataset, *, read_threads: int, prefetch_buffer_size: int,
                    worker_count: int = 0, worker_buffer_size: int = 1) -> grain.IterDataset:
  """Threads in this process, then (with worker_count > 0) Grain worker processes.

  Args:
    ds: the pipeline.
    read_threads: threads making elements in this process (0: the caller's thread).
    prefetch_buffer_size: elements read ahead (at least read_threads).
    worker_count: worker processes (OpenCV runs single-threaded in each).
    worker_buffer_size: elements buffered per worker process.
  """
  threads = max(0, int(read_threads))
  it = ds.to_iter_dataset(grain.ReadOptions(
      num_threads=threads, prefetch_buffer_size=max(int(prefetch_buffer_size), threads)))
  if worker_count > 0:
    if not flags.FLAGS.is_parsed():
      # Grain's workers read absl flags; outside absl.app (tests, notebooks)
      # nobody parsed them, so take the defaults.
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=worker_count,
                                     per_worker_buffer_size=worker_buffer_size),
        worker_init_fn=_init_worker)
  return it
