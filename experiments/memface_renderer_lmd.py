"""LMD of MemFace renderer runs (stage 2) on their held-out frames, with dlib mouth landmarks.

  python experiments/memface_renderer_lmd.py workdirs/nr_mem2 workdirs/nr_nomem2 workdirs/nr_impl \
      --out workdirs/nr_lmd.json

Each workdir's latest (or --step) checkpoint renders the frames its own evaluation uses (split
`config.data.eval_split`, every `eval_stride`-th frame: ground-truth coefficients, masked frame,
the memory saved with the checkpoint), and the prediction is compared with the ground-truth frame.

Landmarks: dlib's HOG detector finds no face at 64 px, so every frame (prediction and ground truth
alike) is upscaled x`--upscale` (cubic) first and the 68 landmarks mapped back to the input pixels.
  * `lmd` (main): detection on each frame independently, as talkingmem/metrics/lip_sync.py's
    `lmd_from_frames`; frames where either side has no face are counted, not averaged.
  * `lmd_gt_box`: the ground truth's box also for the prediction (only the shape predictor runs on
    the prediction), so a face is never "lost" on a poor mouth.
LMD (lip_sync.lmd: mouth points 48-67, each set mean-centred, mean point distance) is in pixels of
the evaluated frame (64 px for the demo). Reference rows, from the same frames: the masked input
(lower face blacked out: dlib's shape prior fills in a mouth), a copy of a template frame (the
speaker's first training frame: a still mouth), and the ground truth shifted by one pixel (ideally
0: the landmarks' own noise on these small frames). `opening_*`: inner-lip opening |p62 - p66| of
prediction vs ground truth (lip_sync.mouth_shape_error, pooled over speakers).
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


class Landmarker:
  """dlib 68-point landmarks of small RGB uint8 frames, detected on a cubic upscale."""

  def __init__(self, upscale: int):
    import dlib  # pylint: disable=g-import-not-at-top
    import face_recognition_models  # pylint: disable=g-import-not-at-top
    self.upscale = upscale
    self.detector = dlib.get_frontal_face_detector()
    self.predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    self.dlib = dlib

  def _big(self, image: np.ndarray) -> np.ndarray:
    import cv2  # pylint: disable=g-import-not-at-top
    h, w = image.shape[:2]
    return cv2.resize(image, (w * self.upscale, h * self.upscale), interpolation=cv2.INTER_CUBIC)

  def detect(self, image: np.ndarray) -> Any | None:
    """The largest face's dlib rectangle in the upscaled frame, or None."""
    big = self._big(image)
    rects = self.detector(big, 0) or self.detector(big, 1)
    return max(rects, key=lambda r: r.width() * r.height()) if rects else None

  def landmarks(self, image: np.ndarray, rect: Any | None = None) -> np.ndarray:
    """(68, 2) landmarks in input pixels (NaN without a face); `rect` skips the detection."""
    rect = self.detect(image) if rect is None else rect
    if rect is None:
      return np.full((68, 2), np.nan)
    shape = self.predictor(self._big(image), rect)
    pts = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
    return (pts + 0.5) / self.upscale - 0.5  # Pixel centres back to the input grid.


def to_uint8(frames: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(np.round(np.clip(frames, 0.0, 1.0) * 255).astype(np.uint8))


def render_split(workdir: str, step: int | None) -> dict[str, Any]:
  """Prediction, target, masked input and a template frame per evaluated frame of the run."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from talkingmem import checkpointing, task as task_lib  # pylint: disable=g-import-not-at-top

  variables, config, step = checkpointing.load_variables(workdir, step)
  if config.get("task") != "memface_renderer":
    raise ValueError(f"{workdir} is a {config.get('task')!r} run, expected 'memface_renderer'")
  task = task_lib.get_task(config)
  params = variables["params"]["renderer"]
  state = jax.tree.map(jnp.asarray, {k: v for k, v in variables.items() if k != "params"})
  render = jax.jit(lambda p, s, b: task.render(p, s, b))
  split = config.data.get("eval_split", "test")
  out = {k: [] for k in ("pred", "target", "masked", "speaker")}
  for batch in task.eval_batches(0, 1, split):
    valid = np.asarray(batch["valid"], bool)
    numeric = {k: jnp.asarray(v) for k, v in batch.items() if np.asarray(v).dtype.kind in "biuf"}
    pred = np.asarray(render(params, state, numeric))
    out["pred"].append(to_uint8(pred[valid]))
    for k in ("target", "masked"):
      out[k].append(to_uint8(np.asarray(batch[k])[valid]))
    out["speaker"].append(np.asarray(batch["speaker"])[valid])
  out = {k: np.concatenate(v) for k, v in out.items()}
  store = task.store
  templates = {}
  for entry in store.splits[config.data.get("train_split", "train")]:  # First training frame.
    index = store.speakers.index(entry.speaker)
    if index not in templates:
      templates[index] = store.clip_arrays(entry)["target"][entry.start]
  if set(np.unique(out["speaker"])) - set(templates):
    raise ValueError(f"{workdir}: a held-out speaker has no training frame to take a template from")
  out["template"] = np.stack([templates[int(s)] for s in out["speaker"]])
  out["target_shift1"] = np.roll(out["target"], 1, axis=2)  # Landmark-noise floor (LMD is centred).
  out.update(step=step, split=split, memory=str(config.model.get("memory", "explicit")),
             image_size=int(config.data.image_size))
  return out


def lmd_rows(frames: dict[str, Any], marker: Landmarker) -> dict[str, Any]:
  from talkingmem.metrics import lip_sync  # pylint: disable=g-import-not-at-top
  gt_rects = [marker.detect(f) for f in frames["target"]]
  gt = np.stack([marker.landmarks(f, r) if r is not None else np.full((68, 2), np.nan)
                 for f, r in zip(frames["target"], gt_rects)])
  total = len(gt)
  result = {"step": frames["step"], "split": frames["split"], "memory": frames["memory"],
            "frames": total, "gt_found": float(np.mean([r is not None for r in gt_rects])),
            "units": f"pixels at {frames['image_size']} px"}
  for name in ("pred", "masked", "template", "target_shift1"):
    own = np.stack([marker.landmarks(f) for f in frames[name]])
    boxed = np.stack([marker.landmarks(f, r) if r is not None else np.full((68, 2), np.nan)
                      for f, r in zip(frames[name], gt_rects)])
    per_frame = lip_sync.lmd_per_frame(own, gt)
    ok = ~np.isnan(per_frame)
    opening = lip_sync.mouth_shape_error(own[ok], gt[ok]) if ok.sum() > 1 else {}
    result[name] = {
        "lmd": lip_sync.lmd(own, gt) if ok.any() else math.nan,
        "found": float(ok.mean()),
        "lmd_gt_box": lip_sync.lmd(boxed, gt) if (~np.isnan(gt[:, 0, 0])).any() else math.nan,
        "opening_mae": opening.get("opening_mae", math.nan),
        "opening_correlation": opening.get("opening_correlation", math.nan),
        "per_frame": _listed(per_frame), "per_frame_gt_box": _listed(
            lip_sync.lmd_per_frame(boxed, gt))}  # For paired comparisons between runs.
  return result


def _listed(values: np.ndarray) -> list[float | None]:
  return [None if np.isnan(v) else round(float(v), 4) for v in values]


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("workdirs", nargs="+", help="memface_renderer training workdirs")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  parser.add_argument("--upscale", type=int, default=4, help="cubic upscale before dlib")
  parser.add_argument("--out", default=None, help="also write the results here (JSON)")
  args = parser.parse_args(argv)
  if args.upscale < 1:
    parser.error("--upscale must be >= 1")
  marker = Landmarker(args.upscale)
  results = {}
  for workdir in args.workdirs:
    start = time.time()
    frames = render_split(workdir, args.step)
    print(f"{workdir}: rendered {len(frames['pred'])} frames in {time.time() - start:.0f} s",
          file=sys.stderr, flush=True)
    results[workdir] = lmd_rows(frames, marker)
    print(f"{workdir}: landmarks in {time.time() - start:.0f} s", file=sys.stderr, flush=True)
    print(json.dumps({workdir: {k: v for k, v in results[workdir].items()
                                if not isinstance(v, dict)} | {
        name: {k: v for k, v in row.items() if not k.startswith("per_frame")}
        for name, row in results[workdir].items() if isinstance(row, dict)}}), flush=True)
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
  main()
