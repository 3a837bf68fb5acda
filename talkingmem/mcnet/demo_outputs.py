"""End-of-training outputs: a held-out evaluation summary and an animation of a held-out identity."""
from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from data_pipelines import video_io

from data_pipelines.fomm import pipelines
from talkingmem.mcnet.animate import animate_frames  # the batched, jitted animation loop lives there


def held_out_evaluation(task, variables) -> dict[str, Any]:
  """Means over the FOMM-protocol test frames: L1/PSNR/SSIM of the prediction and two baselines."""
  return task.mean_eval_metrics(variables, task.eval_batches(0, 1))


def write_animation(task, variables, path: pathlib.Path, max_frames: int | None = None
                    ) -> dict[str, Any] | None:
  """source | driving | prediction video: the first held-out identity driven by the second one."""
  by_identity = {}
  for v in pipelines.video_dataset(task.config.data, process_index=0, process_count=1):
    by_identity.setdefault(v["identity"], v)
    if len(by_identity) == 2:
      break
  if len(by_identity) < 2:
    return None
  (src_id, src_video), (drv_id, drv_video) = list(by_identity.items())[:2]
  source = src_video["frames"][0].astype(np.float32) / 255
  driving = drv_video["frames"][:max_frames].astype(np.float32) / 255
  pred = animate_frames(task.model, variables, source, driving)
  side = np.concatenate([np.broadcast_to(source, driving.shape), driving, pred], axis=2)
  path.parent.mkdir(parents=True, exist_ok=True)
  video_io.write_video(path, (np.clip(side, 0, 1) * 255).round().astype(np.uint8), fps=25)
  return {"path": str(path), "source_identity": src_id, "driving_identity": drv_id,
          "frames": int(len(pred)), "layout": "source | driving | prediction"}


def write_demo_outputs(task, variables, workdir: pathlib.Path) -> dict[str, Any]:
  summary = {"evaluation": held_out_evaluation(task, variables)}
  animation = write_animation(task, variables, workdir / "animation.mp4")
  if animation:
    summary["animation"] = animation
  (workdir / "eval_summary.json").write_text(json.dumps(summary, indent=1))
  return summary
