"""End-of-training outputs: a held-out evaluation summary and an animation of a held-out identity."""
from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines import pipelines, video_io
from talkingmem.mcnet.model import MCNet
from talkingmem.mcnet.normalize import normalize_kp


def held_out_evaluation(task, variables) -> dict[str, Any]:
  """Means over the FOMM-protocol test frames: L1/PSNR/SSIM of the prediction and two baselines."""
  metric_fn = jax.jit(task.eval_metrics)
  sums, count = {}, 0.0
  for batch in task.eval_batches(0, 1):
    out = jax.device_get(metric_fn(variables, {k: jnp.asarray(v) for k, v in batch.items()}))
    valid = np.asarray(out.pop("valid"), np.float64)
    count += valid.sum()
    for k, v in out.items():
      sums[k] = sums.get(k, 0.0) + float(np.sum(np.asarray(v, np.float64) * valid))
  return {k: v / max(count, 1) for k, v in sums.items()} | {"num_frames": int(count)}


def animate_frames(model: MCNet, variables, source: np.ndarray, driving: np.ndarray,
                   batch_size: int = 16, relative: bool = True, adapt_scale: bool = True) -> np.ndarray:
  """Animates one source image (H, W, 3) by driving frames (T, H, W, 3), floats in [0, 1]."""
  detect = jax.jit(lambda v, x: model.apply(v, x, method=MCNet.detect))
  keep = lambda kp: {k: v for k, v in kp.items() if k in ("value", "jacobian")}  # noqa: E731
  source = jnp.asarray(source)
  kp_source = keep(detect(variables, source[None]))
  kp_initial = keep(detect(variables, jnp.asarray(driving[:1])))

  @jax.jit
  def step(variables, source, kp_source, kp_initial, frames):
    # Everything is an argument: closed-over arrays would be constant-folded by XLA at compile time.
    kp_driving = keep(model.apply(variables, frames, method=MCNet.detect))
    n = frames.shape[0]
    tile = lambda kp: {k: jnp.repeat(v, n, axis=0) for k, v in kp.items()}  # noqa: E731
    kp_norm = normalize_kp(tile(kp_source), kp_driving, tile(kp_initial), adapt_movement_scale=adapt_scale,
                           use_relative_movement=relative, use_relative_jacobian=relative)
    src = jnp.broadcast_to(source[None], frames.shape)
    return model.apply(variables, src, tile(kp_source), keep(kp_norm), method=MCNet.generate)["prediction"]

  out = []
  for start in range(0, len(driving), batch_size):
    chunk = driving[start:start + batch_size]
    pad = batch_size - len(chunk)
    padded = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)]) if pad else chunk
    pred = step(variables, source, kp_source, kp_initial, jnp.asarray(padded))
    out.append(np.asarray(pred)[:len(chunk)])
  return np.concatenate(out)


def write_demo_outputs(task, variables, workdir: pathlib.Path) -> dict[str, Any]:
  summary = {"evaluation": held_out_evaluation(task, variables)}
  videos = list(pipelines.video_dataset(task.config.data, process_index=0, process_count=1))
  by_identity = {}
  for v in videos:
    by_identity.setdefault(v["identity"], v)
  if len(by_identity) >= 2:
    (src_id, src_video), (drv_id, drv_video) = list(by_identity.items())[:2]
    source = src_video["frames"][0].astype(np.float32) / 255
    driving = drv_video["frames"].astype(np.float32) / 255
    pred = animate_frames(task.model, variables, source, driving)
    side = np.concatenate([np.broadcast_to(source, driving.shape), driving, pred], axis=2)
    path = workdir / "animation.mp4"
    video_io.write_video(path, (np.clip(side, 0, 1) * 255).round().astype(np.uint8), fps=25)
    summary["animation"] = {"path": str(path), "source_identity": src_id, "driving_identity": drv_id,
                            "frames": int(len(pred)), "layout": "source | driving | prediction"}
  (workdir / "eval_summary.json").write_text(json.dumps(summary, indent=1))
  return summary
