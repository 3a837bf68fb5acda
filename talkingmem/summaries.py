"""Metric writers: TensorBoard through CLU, plus a JSON-lines copy of every scalar in the workdir."""
from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Mapping

import jax
import numpy as np
from absl import logging


class JsonlOnly:
  """Stands in for the TensorBoard writer where TensorFlow is missing (metrics.jsonl still written)."""

  def write_scalars(self, step: int, values: Mapping[str, Any]) -> None:
    del step, values

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    del step, images

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


def tensorboard_writer(workdir: str | pathlib.Path, is_main: bool):
  """CLU's writer; CLU writes TensorBoard files through TensorFlow, which GPU images often lack."""
  try:
    from clu import metric_writers
  except ImportError as e:
    logging.warning("No TensorBoard summaries (%s): install tensorflow-cpu for them; "
                    "metrics.jsonl is written all the same.", e)
    return JsonlOnly()
  return metric_writers.create_default_writer(str(workdir), just_logging=not is_main, asynchronous=True)


class Writer:
  """Scalars to TensorBoard and `metrics.jsonl`; images to TensorBoard. Process 0 writes files."""

  def __init__(self, workdir: str | pathlib.Path):
    self.is_main = jax.process_index() == 0
    self.tb = tensorboard_writer(workdir, self.is_main)
    self.jsonl = pathlib.Path(workdir) / "metrics.jsonl" if self.is_main else None

  def scalars(self, step: int, values: Mapping[str, Any]) -> None:
    values = {k: float(np.asarray(v)) for k, v in values.items()}
    self.tb.write_scalars(step, values)
    if self.jsonl is not None:
      with self.jsonl.open("a") as f:
        f.write(json.dumps({"step": int(step), "time": time.time(), **values}) + "\n")

  def images(self, step: int, images: Mapping[str, Any]) -> None:
    self.tb.write_images(step, {k: np.clip(np.asarray(v, np.float32), 0, 1) for k, v in images.items()})

  def flush(self) -> None:
    self.tb.flush()

  def close(self) -> None:
    self.tb.close()


class Progress:
  """A terminal progress line: step, loss, steps/s, samples/s and ETA."""

  def __init__(self, total_steps: int, batch_size: int, first_step: int):
    self.total, self.batch = total_steps, batch_size
    self.t0, self.s0 = time.perf_counter(), first_step

  def rates(self, step: int) -> tuple[float, float]:
    elapsed = max(time.perf_counter() - self.t0, 1e-9)
    steps_per_s = (step - self.s0) / elapsed
    return steps_per_s, steps_per_s * self.batch

  def line(self, step: int, loss: float) -> str:
    steps_per_s, samples_per_s = self.rates(step)
    eta = (self.total - step) / steps_per_s if steps_per_s > 0 else float("inf")
    return (f"step {step}/{self.total}  loss {loss:.4f}  {steps_per_s:.2f} steps/s  "
            f"{samples_per_s:.1f} samples/s  ETA {eta / 60:.1f} min")
