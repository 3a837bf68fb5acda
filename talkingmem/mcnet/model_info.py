"""Parameter counts, FLOPs (XLA cost analysis) and forward time of a task's model."""
from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from talkingmem.mcnet.model import MCNet


def count_params(tree: Any) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def compiled_flops(fn, *args) -> float:
  """FLOPs of one call as XLA counts them (convolutions and dots 2 per MAC, plus elementwise ops)."""
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get("flops", float("nan"))) if cost else float("nan")


def mcnet_info(model_config: ml_collections.ConfigDict, time_forward: bool = True,
               repeats: int = 3) -> dict[str, Any]:
  """Sizes and per-frame cost (batch 1) of the keypoint detector and the generator."""
  model = MCNet(model_config)
  size = model_config.image_size
  image = jnp.zeros((1, size, size, model_config.num_channels), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), image, image))
  params = variables["params"]
  info = {
      "image_size": size, "num_kp": model_config.num_kp, "use_memory": model_config.use_memory,
      "params": {"kp_detector": count_params(params["kp_detector"]),
                 "generator": count_params(params["generator"])},
  }
  gen = params["generator"]
  info["params"]["generator_parts"] = {k: count_params(v) for k, v in gen.items()}
  detect = lambda v, x: model.apply(v, x, method=MCNet.detect)  # noqa: E731
  kp = jax.eval_shape(detect, variables, image)

  def generate(v, x, kp_s, kp_d):
    return model.apply(v, x, kp_s, kp_d, method=MCNet.generate)["prediction"]

  info["gflops_per_frame"] = {"kp_detector": compiled_flops(detect, variables, image) / 1e9,
                              "generator": compiled_flops(generate, variables, image, kp, kp) / 1e9}
  if time_forward:
    concrete = jax.jit(model.init)(jax.random.PRNGKey(0), image, image)
    rng = np.random.default_rng(0)
    src = jnp.asarray(rng.uniform(size=image.shape), jnp.float32)
    forward = jax.jit(lambda v, s, d: model.apply(v, s, d)["prediction"])
    t0 = time.perf_counter()
    forward(concrete, src, src).block_until_ready()
    info["compile_seconds"] = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      forward(concrete, src, src).block_until_ready()
      times.append(time.perf_counter() - t0)
    info["forward_seconds_batch1"] = float(np.median(times))
    info["device"] = jax.devices()[0].device_kind
  return info
