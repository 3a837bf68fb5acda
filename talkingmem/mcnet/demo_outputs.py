"""End-of-training outputs: a held-out evaluation summary and an animation of a held-out identity."""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import cv2
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
  sheet = write_contact_sheet(path.with_suffix(".png"), source, driving, pred)
  return {"path": str(path), "contact_sheet": str(sheet), "source_identity": src_id,
          "driving_identity": drv_id, "frames": int(len(pred)), "layout": "source | driving | prediction"}


def write_contact_sheet(path: pathlib.Path, source: np.ndarray, driving: np.ndarray, pred: np.ndarray,
                        rows: int = 6, cell: int = 192) -> pathlib.Path:
  """PNG of `rows` evenly spaced frames, each row source | driving | prediction, cells `cell` px wide.

  Small frames (64^2) are enlarged with nearest-neighbour so a person sees the pixels the model made.
  Written atomically (temporary file, then rename).
  """
  picks = np.unique(np.linspace(0, len(pred) - 1, min(rows, len(pred))).round().astype(int))
  scale = max(1, cell // source.shape[0])
  enlarge = lambda x: np.repeat(np.repeat(x, scale, 0), scale, 1)  # noqa: E731
  header = np.full((28, 3 * source.shape[1] * scale, 3), 255, np.uint8)
  for col, title in enumerate(("source", "driving", "prediction")):
    cv2.putText(header, title, (col * source.shape[1] * scale + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (0, 0, 0), 1, cv2.LINE_AA)
  body = [np.concatenate([enlarge(x) for x in (source, driving[i], pred[i])], axis=1) for i in picks]
  image = np.concatenate([header, (np.clip(np.concatenate(body, 0), 0, 1) * 255).round().astype(np.uint8)])
  tmp = path.with_name(path.name + ".tmp.png")
  if not cv2.imwrite(str(tmp), image[..., ::-1]):
    raise OSError(f"could not write {tmp}")
  os.replace(tmp, path)
  return path


def headline(evaluation: dict[str, Any]) -> str | None:
  """One line for the terminal: held-out L1 of the prediction against the warp and the still source."""
  if not all(k in evaluation for k in ("l1", "l1_deformed_source", "l1_source")):
    return None
  line = (f"held-out L1 {evaluation['l1']:.4f} (deformed source {evaluation['l1_deformed_source']:.4f}, "
          f"still source {evaluation['l1_source']:.4f}: {evaluation['l1'] / evaluation['l1_source']:.2f}x)")
  if "l1_disoccluded" in evaluation and evaluation["l1_disoccluded"] == evaluation["l1_disoccluded"]:
    line += (f"; disoccluded pixels {evaluation['l1_disoccluded']:.4f} "
             f"(still source {evaluation.get('l1_source_disoccluded', float('nan')):.4f})")
  return line


def write_demo_outputs(task, variables, workdir: pathlib.Path) -> dict[str, Any]:
  summary = {"evaluation": held_out_evaluation(task, variables)}
  if line := headline(summary["evaluation"]):
    summary["headline"] = line
  animation = write_animation(task, variables, workdir / "animation.mp4")
  if animation:
    summary["animation"] = animation
    # train.py logs the returned summary last: these two lines tell a person where to look.
    summary["look_at"] = [f"animation (source | driving | prediction): {animation['path']}",
                          f"contact sheet (PNG, source | driving | prediction): {animation['contact_sheet']}"]
  (workdir / "eval_summary.json").write_text(json.dumps(summary, indent=1))
  return summary
