"""Timing helpers shared by the benchmarks in experiments/: compile apart from run, XLA-counted FLOPs,
memory, a device's peak FLOP/s for MFU, and the largest batch a measured footprint allows."""
from __future__ import annotations

import time
from typing import Any, Callable

import jax
import numpy as np

# Dense bf16 peak FLOP/s by device kind (vendor specs); matched as a substring of `device_kind`.
# The CPU figure is this project's 2-core estimate (experiments/RESULTS.md, "Peak and MFU").
PEAK_FLOPS = {
    "H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12,
    "TPU v6": 918e12, "TPU v5p": 459e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v4": 275e12,
    "cpu": 332e9,
}


def peak_flops(device_kind: str, platform: str) -> float | None:
  """The assumed peak for MFU, or None when the device is not in PEAK_FLOPS (pass it explicitly)."""
  for name, flops in PEAK_FLOPS.items():
    if name.lower() in device_kind.lower():
      return flops
  return PEAK_FLOPS["cpu"] if platform == "cpu" else None


def timed(fn: Callable[..., Any], *args: Any, repeats: int) -> tuple[Any, float, float]:
  """(output, first-call seconds, median seconds of `repeats` further calls)."""
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return out, first, float(np.median(times))


def compile_with_cost(fn: Any, *args: Any) -> tuple[Any, float, float, dict[str, int]]:
  """(compiled, compile seconds, XLA-counted FLOPs, memory plan in bytes) of a jitted function."""
  t0 = time.perf_counter()
  compiled = fn.lower(*args).compile()
  seconds = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  memory = {}
  analysis = compiled.memory_analysis()
  if analysis is not None:
    memory = {k: int(getattr(analysis, f"{k}_size_in_bytes", 0))
              for k in ("argument", "output", "alias", "temp")}
  return compiled, seconds, flops, memory


def device_memory() -> tuple[int | None, int | None]:
  """(peak bytes in use so far, bytes the device can hold) where the backend reports them."""
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use"), stats.get("bytes_limit")


def extrapolated_batch(capacity: int, fixed_bytes: int, bytes_at_batch: int, batch: int,
                       multiple: int = 8, headroom: float = 0.9) -> int:
  """Largest multiple of `multiple` whose footprint, extrapolated linearly from one measured batch
  (fixed part + per-sample part), stays under `headroom` of the capacity; at least `batch`."""
  per_sample = max(bytes_at_batch - fixed_bytes, 1) / batch
  fits = int((headroom * capacity - fixed_bytes) // per_sample)
  return max(batch, fits // multiple * multiple)


def tree_bytes(tree: Any) -> int:
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree)))
