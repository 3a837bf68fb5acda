"""Evaluation protocols for MCNet checkpoints: same-identity reconstruction and CSV pair lists.

  python -m talkingmem.main --mode=eval --workdir=W [--checkpoint=vox.pth.tar] [--pairs=pairs.csv] \
      [--lpips_backbone=alexnet-owt-7be5be79.pth] [--face_metrics]

Reconstruction (FOMM protocol): for every test video, frame 0 is the source and every frame is a
driving frame and its own ground truth, with absolute keypoints. Pair lists (`source_video,
source_frame, driving_video, driving_frame`) cover random-pair and cross-identity evaluation: a pair
from one video has its driving frame as ground truth; a pair across videos has none, so it gets CSIM
to the source (identity kept) and AKD to the driving frame (motion followed) only. AUCON and PRMSE
(the paper's cross-identity expression/pose scores) need py-feat's models, which cannot be had offline,
and are reported as unavailable.

Metrics: L1, PSNR, SSIM always; LPIPS only with the torchvision backbone file (else reported
unavailable with the reason, never as a number); with --face_metrics, AKD (68 landmarks), AED and CSIM
(128-d descriptors) from dlib. The paper measured AKD with face-alignment and AED/CSIM with OpenFace,
so absolute face-metric values differ from its tables. Frames where dlib finds no face are counted as
missing, never averaged as zero. On data with ground-truth landmarks (the synthetic set), the dlib
detector's own AKD against them is reported too: it validates the metric rather than the model.

Outputs in the evaluation directory: report.json (every metric with counts, the config, the
checkpoint and its step), per_video.csv and per_frame.csv (or pairs.csv); a table is printed.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
import pathlib
import shutil
from typing import Any, Iterable, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines import video_io

from data_pipelines.fomm import pipelines
from data_pipelines.synthetic import disocclusion
from data_pipelines.user_errors import UserInputError
from talkingmem.mcnet.animate import LoadedModel
from talkingmem.mcnet.model import MCNet
from talkingmem.mcnet.normalize import normalize_kp
from talkingmem.metrics import image as image_metrics

PIXEL_METRICS = ("l1", "psnr", "ssim")
# Inside the ground-truth disocclusion mask (synthetic data only; NaN for frames with an empty mask).
MASKED_METRICS = ("l1_disoccluded", "psnr_disoccluded", "ssim_disoccluded", "disoccluded_fraction")
FACE_METRICS = ("akd", "aed", "csim")
NOT_OFFLINE = ("needs py-feat's action-unit and head-pose models, which cannot be obtained offline; "
               "not computed")
FACE_METRICS_NOTE = ("dlib 68-point landmarks (AKD) and ResNet descriptors (AED, CSIM); the paper used "
                     "face-alignment and OpenFace, so absolute values differ from its tables")


class NoDataSettings(UserInputError):
  """Nothing says where the evaluation data is."""


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """What to measure beyond L1/PSNR/SSIM, and how many videos."""
  face_metrics: bool = False
  lpips_net: str = "alex"
  lpips_backbone: str | None = None
  lpips_heads: str | None = None
  max_videos: int | None = None  # reconstruction: the first N test videos (None: all)
  pairs_relative: bool = False  # pairs: motion relative to the driving video's frame 0 (FOMM animation)


# ---------------------------------------------------------------------------------------------------
# Model step and metric helpers.


def make_step(model: MCNet, relative: bool = False):
  """jit (variables, source, driving, initial) -> (prediction, {l1, psnr, ssim}), all (B, ...)."""
  keep = lambda kp: {k: v for k, v in kp.items() if k in ("value", "jacobian")}  # noqa: E731

  @jax.jit
  def step(variables, source, driving, initial):
    kp_source = keep(model.apply(variables, source, method=MCNet.detect))
    kp_driving = keep(model.apply(variables, driving, method=MCNet.detect))
    if relative:  # pairs are independent: one movement scale per pair
      kp_initial = keep(model.apply(variables, initial, method=MCNet.detect))
      kp_driving = keep(normalize_kp(kp_source, kp_driving, kp_initial, adapt_movement_scale=True,
                                     use_relative_movement=True, use_relative_jacobian=True,
                                     scale_per_sample=True))
    pred = model.apply(variables, source, kp_source, kp_driving, method=MCNet.generate)["prediction"]
    return pred, {"l1": image_metrics.l1(pred, driving, reduce=False),
                  "psnr": image_metrics.psnr(pred, driving, reduce=False),
                  "ssim": image_metrics.ssim(pred, driving, reduce=False)}

  return step


def _pad(x: np.ndarray, n: int) -> np.ndarray:
  return np.concatenate([x, np.repeat(x[-1:], n - len(x), 0)]) if len(x) < n else x


def load_lpips(options: EvalOptions):
  """(LPIPSMetric or None, the reason it is unavailable or None)."""
  from talkingmem.metrics import lpips  # pylint: disable=g-import-not-at-top
  try:
    return lpips.LPIPSMetric.from_files(options.lpips_net, options.lpips_backbone, options.lpips_heads), None
  except lpips.LPIPSUnavailable as e:
    return None, str(e)


def summarize(rows: Sequence[dict], names: Iterable[str]) -> dict[str, dict]:
  """Mean over rows of each metric, with the number of rows measured and missing (NaN: no face)."""
  out = {}
  for name in names:
    values = np.array([r[name] for r in rows if name in r], np.float64)
    ok = ~np.isnan(values)
    out[name] = {"value": float(values[ok].mean()) if ok.any() else math.nan,
                 "count": int(ok.sum()), "num_missing": int((~ok).sum())}
  return out


def _json_safe(x: Any) -> Any:
  """NaN/inf -> None, numpy scalars -> Python: report.json stays strict JSON."""
  if isinstance(x, dict):
    return {str(k): _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  if isinstance(x, (np.generic,)):
    x = x.item()
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def write_csv(path: pathlib.Path, rows: Sequence[dict]) -> None:
  columns = list(dict.fromkeys(k for r in rows for k in r))
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    for r in rows:
      writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})


def _face_values(pred: np.ndarray, gt: np.ndarray, source: np.ndarray) -> dict[str, np.ndarray]:
  from talkingmem.metrics import face  # pylint: disable=g-import-not-at-top  (loads dlib models)
  return {k: r.per_frame for k, r in face.face_metrics(pred, gt, source=source).items()}


def _detector_akd(frames: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
  """Per-frame mean distance (px) of dlib's landmarks from ground-truth ones; NaN where no face."""
  from talkingmem.metrics import face  # pylint: disable=g-import-not-at-top
  found = face.analyze_faces(frames)
  return np.array([math.nan if f is None else float(np.linalg.norm(f.landmarks - lm, axis=-1).mean())
                   for f, lm in zip(found, landmarks)])


# ---------------------------------------------------------------------------------------------------
# Protocols.


def resolve_data_config(loaded: LoadedModel, config: Any = None, workdir: str | pathlib.Path | None = None,
                        data_root: str | None = None) -> Any:
  """Data settings: --config's, else the run's (the workdir's config.json), else defaults at `data_root`.

  An official checkpoint carries no data settings, hence the fallbacks. The embedded synthetic set is
  generated on first use, as in training.
  """
  data = config.data if config is not None else loaded.config.data if loaded.config is not None else None
  if data is None and workdir and (pathlib.Path(workdir) / "config.json").exists():
    from talkingmem import checkpointing  # pylint: disable=g-import-not-at-top
    data = checkpointing.load_config(workdir).data
  if data is None:
    if not data_root:
      raise NoDataSettings("no data settings: pass --data_root (a FOMM-layout folder with test/), "
                           "--config, or a --workdir with config.json")
    return pipelines.DataConfig(root=data_root, eval_chunk_size=16)  # 16 frames of 256x256 fit any GPU
  if data_root:
    return dataclasses.replace(pipelines.as_data_config(data), root=data_root)
  from talkingmem.mcnet.task import ensure_synthetic_data  # pylint: disable=g-import-not-at-top
  ensure_synthetic_data(data)
  return data


def default_eval_dir(workdir: str | pathlib.Path, loaded: LoadedModel, pairs: str | None) -> pathlib.Path:
  """W/eval/<protocol>_<step or 'official'>."""
  protocol = f"pairs_{pathlib.Path(pairs).stem}" if pairs else "reconstruction"
  tag = f"step{loaded.step}" if loaded.step is not None else loaded.origin
  return pathlib.Path(workdir) / "eval" / f"{protocol}_{tag}"


def _eval_data_config(data_config: Any, image_size: int) -> pipelines.DataConfig:
  """Frames at the model's size, in fixed-size chunks (one compilation), with no augmentation."""
  cfg = pipelines.as_data_config(data_config)
  return dataclasses.replace(cfg, image_size=image_size, augment=False,
                             eval_chunk_size=cfg.eval_chunk_size or 16, worker_count=0)


def _ground_truth_landmarks(store, video, size: tuple[int, int]) -> np.ndarray | None:
  """(T, 68, 2) landmarks at the evaluated frame size, from the synthetic metadata, if any."""
  meta = store.metadata(video) if hasattr(store, "metadata") else None
  if not meta or "landmarks" not in meta:
    return None
  stored = video_io.video_info(video.path)["size"]
  scale = np.array([size[1] / stored[1], size[0] / stored[0]])
  return (np.asarray(meta["landmarks"], np.float64) + 0.5) * scale - 0.5


def masked_values(pred: np.ndarray, gt: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
  """Per-frame L1, PSNR and SSIM inside (N, H, W) masks of (N, H, W, C) images in [0, 1] (NaN for an
  empty mask; SSIM: the SSIM map's mean over the masked pixels at least the window's radius from the
  border), and the masks' share of the frame."""
  values = {"l1_disoccluded": image_metrics.masked_l1(pred, gt, masks),
            "psnr_disoccluded": image_metrics.masked_psnr(pred, gt, masks),
            "ssim_disoccluded": image_metrics.masked_ssim(pred, gt, masks)}
  return {**{k: np.asarray(v, np.float64) for k, v in values.items()},
          "disoccluded_fraction": np.asarray(masks, np.float64).mean((1, 2))}


def reconstruction(loaded: LoadedModel, data_config: Any, options: EvalOptions = EvalOptions(),
                   lpips_metric=None) -> tuple[dict, list[dict]]:
  """FOMM same-identity reconstruction: (summary, per-frame rows)."""
  cfg = _eval_data_config(data_config, loaded.image_size)
  store = pipelines.make_store(cfg)
  step = make_step(loaded.model)
  rows, seen, gt_landmarks, masks_of = [], [], {}, {}
  chunks = pipelines.reconstruction_dataset(cfg, store=store, pad=True, process_index=0, process_count=1)
  for chunk in chunks:
    name = str(chunk["video"])
    if name not in seen:
      if options.max_videos is not None and len(seen) >= options.max_videos:
        break
      seen.append(name)
      logging.info("evaluating %s (%d/%s)", name, len(seen), options.max_videos or "all")
    driving, valid = chunk["driving"], np.asarray(chunk["valid"], bool)
    source = np.broadcast_to(chunk["source"], driving.shape)
    pred, values = jax.device_get(step(loaded.variables, jnp.asarray(source), jnp.asarray(driving), None))
    pred, gt, frames = np.asarray(pred)[valid], driving[valid], np.asarray(chunk["frame_indices"])[valid]
    values = {k: np.asarray(v)[valid] for k, v in values.items()}
    if lpips_metric is not None:
      values["lpips"] = np.asarray(lpips_metric(pred, gt))
    if name not in masks_of:
      masks_of[name] = disocclusion.video_masks(store, store.find(name, cfg.eval_split), gt.shape[1:3])
    if masks_of[name] is not None:
      values.update(masked_values(pred, gt, masks_of[name][frames]))
    if options.face_metrics:
      values.update(_face_values(pred, gt, gt))
      if name not in gt_landmarks:
        gt_landmarks[name] = _ground_truth_landmarks(store, store.find(name, cfg.eval_split), gt.shape[1:3])
      if gt_landmarks[name] is not None:
        values["detector_akd"] = _detector_akd(gt, gt_landmarks[name][frames])
    for i, frame in enumerate(frames):
      rows.append({"video": name, "identity": str(chunk["identity"]), "frame": int(frame),
                   **{k: float(v[i]) for k, v in values.items()}})
  if not rows:
    raise UserInputError(f"no {cfg.eval_split!r} videos to evaluate in {cfg.root}; put test videos in its "
                         f"{cfg.eval_split}/ folder (or give --data_root)")
  names = [n for n in (*PIXEL_METRICS, *MASKED_METRICS, "lpips", *FACE_METRICS) if any(n in r for r in rows)]
  summary = {"metrics": summarize(rows, names), "num_videos": len(seen), "num_frames": len(rows)}
  if any("detector_akd" in r for r in rows):
    summary["detector_validation"] = {
        "akd_dlib_vs_ground_truth_landmarks": summarize(rows, ["detector_akd"])["detector_akd"],
        "note": "dlib's landmarks on the ground-truth frames against the renderer's landmarks (px): the "
                "error floor of the AKD metric itself on this data"}
  return summary, rows


def per_video(rows: Sequence[dict]) -> list[dict]:
  """One row per video: metric means over its frames (face metrics over frames with faces)."""
  by_video: dict[str, list[dict]] = {}
  for r in rows:
    by_video.setdefault(r["video"], []).append(r)
  out = []
  for name, frames in by_video.items():
    metrics = [k for k in frames[0] if k not in ("video", "identity", "frame")]
    summary = summarize(frames, metrics)
    row = {"video": name, "identity": frames[0]["identity"], "frames": len(frames)}
    for k, s in summary.items():
      row[k] = s["value"]
      if s["num_missing"]:
        row[f"{k}_missing"] = s["num_missing"]
    out.append(row)
  return out


def pair_group(source_video: str, driving_video: str, source_identity: str, driving_identity: str) -> str:
  """'same_video' (driving frame = ground truth), 'same_identity' or 'cross_identity' (no ground truth)."""
  if source_video == driving_video:
    return "same_video"
  return "same_identity" if source_identity == driving_identity else "cross_identity"


GROUP_METRICS = {"same_video": (*PIXEL_METRICS, "lpips", *FACE_METRICS),
                 "same_identity": ("csim", "akd"), "cross_identity": ("csim", "akd")}


def pair_list(loaded: LoadedModel, data_config: Any, csv_path: str | pathlib.Path,
              options: EvalOptions = EvalOptions(), lpips_metric=None) -> tuple[dict, list[dict]]:
  """Pairs from a CSV: (summary per group, per-pair rows)."""
  cfg = _eval_data_config(data_config, loaded.image_size)
  store = pipelines.make_store(cfg)
  step = make_step(loaded.model, relative=options.pairs_relative)
  first_frames: dict[str, np.ndarray] = {}

  def first_frame(name: str) -> np.ndarray:
    if name not in first_frames:
      from data_pipelines.fomm.pairs import to_float  # pylint: disable=g-import-not-at-top
      first_frames[name] = to_float(store.read_frames(store.find(name, cfg.eval_split), [0]))[0]
    return first_frames[name]

  rows = []
  batches = pipelines.pair_list_dataset(cfg, csv_path, store=store, process_index=0, process_count=1)
  for batch in batches:
    n, size = len(batch["source"]), cfg.eval_batch_size
    src_names, drv_names = [str(v) for v in batch["source_video"]], [str(v) for v in batch["driving_video"]]
    initial = None
    if options.pairs_relative:
      initial = jnp.asarray(_pad(np.stack([first_frame(v) for v in drv_names]), size))
    pred, values = jax.device_get(step(loaded.variables, jnp.asarray(_pad(batch["source"], size)),
                                       jnp.asarray(_pad(batch["driving"], size)), initial))
    pred = np.asarray(pred)[:n]
    values = {k: np.asarray(v)[:n] for k, v in values.items()}
    if lpips_metric is not None:
      values["lpips"] = np.asarray(lpips_metric(pred, batch["driving"]))
    if options.face_metrics:
      values.update(_face_values(pred, batch["driving"], batch["source"]))
    for i in range(n):
      ids = [store.find(v, cfg.eval_split).identity for v in (src_names[i], drv_names[i])]
      group = pair_group(src_names[i], drv_names[i], *ids)
      measured = {k: float(v[i]) for k, v in values.items() if k in GROUP_METRICS[group]}
      rows.append({"source_video": src_names[i], "source_frame": int(batch["source_frame"][i]),
                   "driving_video": drv_names[i], "driving_frame": int(batch["driving_frame"][i]),
                   "group": group, **measured})
  groups = {}
  for group, metrics in GROUP_METRICS.items():
    members = [r for r in rows if r["group"] == group]
    if members:
      names = [m for m in metrics if any(m in r for r in members)]
      groups[group] = {"metrics": summarize(members, names), "num_pairs": len(members)}
  summary = {"groups": groups, "num_pairs": len(rows),
             "motion": "relative to the driving video's frame 0, adapted scale" if options.pairs_relative
                       else "absolute keypoints",
             "notes": {"same_identity/cross_identity": "no ground truth: CSIM is to the source image, AKD to "
                                                       "the driving frame"}}
  return summary, rows


# ---------------------------------------------------------------------------------------------------
# Report.


def _unavailable(options: EvalOptions, pairs: bool, lpips_reason: str | None) -> dict[str, str]:
  out = {"lpips": lpips_reason} if lpips_reason else {}
  if not options.face_metrics:
    out.update({m: "face metrics are off: pass --face_metrics" for m in FACE_METRICS})
  if pairs:
    out.update(aucon=f"AUCON {NOT_OFFLINE}", prmse=f"PRMSE {NOT_OFFLINE}")
  return out


def evaluate(loaded: LoadedModel, data_config: Any, out_dir: str | pathlib.Path,
             pairs: str | pathlib.Path | None = None, options: EvalOptions = EvalOptions()) -> dict:
  """Runs one protocol, writes report.json and the CSVs into `out_dir`, returns the report."""
  final_dir = pathlib.Path(out_dir)
  out_dir = final_dir.with_name(f".{final_dir.name}.writing")  # Renamed into place when complete.
  lpips_metric, lpips_reason = load_lpips(options)
  if pairs:
    summary, rows = pair_list(loaded, data_config, pairs, options, lpips_metric)
  else:
    summary, rows = reconstruction(loaded, data_config, options, lpips_metric)
  if out_dir.exists():
    shutil.rmtree(out_dir)
  out_dir.mkdir(parents=True)
  if pairs:
    write_csv(out_dir / "pairs.csv", rows)
    files = ["pairs.csv"]
  else:
    write_csv(out_dir / "per_frame.csv", rows)
    write_csv(out_dir / "per_video.csv", per_video(rows))
    files = ["per_frame.csv", "per_video.csv"]
  data = dataclasses.asdict(_eval_data_config(data_config, loaded.image_size))
  data["augment"] = str(data["augment"])
  report = {
      "protocol": "pairs" if pairs else "reconstruction",
      "pairs_csv": str(pairs) if pairs else None,
      **summary,
      "unavailable": _unavailable(options, bool(pairs), lpips_reason),
      "face_metrics": FACE_METRICS_NOTE if options.face_metrics else None,
      "checkpoint": loaded.describe(),
      "config": {"model": loaded.model_config.to_dict(), "data": data,
                 "run": loaded.config.to_dict() if loaded.config is not None else None,
                 "options": dataclasses.asdict(options)},
      "files": files,
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  (out_dir / "report.json").write_text(json.dumps(_json_safe(report), indent=1, default=str))
  video_io.replace_path(out_dir, final_dir)
  return report


def format_table(report: dict) -> str:
  """The report's metrics as a text table (one block per pair group)."""
  blocks = report["groups"] if report["protocol"] == "pairs" else {"reconstruction": report}
  lines = []
  for title, block in blocks.items():
    lines.append(f"{title}:")
    lines.append(f"  {'metric':<10}{'value':>12}{'count':>8}{'missing':>9}")
    for name, m in block["metrics"].items():
      value = "n/a" if m["value"] is None or math.isnan(m["value"]) else f"{m['value']:.4f}"
      lines.append(f"  {name:<10}{value:>12}{m['count']:>8}{m['num_missing']:>9}")
  validation = report.get("detector_validation")
  if validation:
    m = validation["akd_dlib_vs_ground_truth_landmarks"]
    value = "n/a" if m["value"] is None or math.isnan(m["value"]) else f"{m['value']:.4f}"
    lines.append(f"dlib AKD vs ground-truth landmarks: {value} px ({m['count']} frames, "
                 f"{m['num_missing']} without a face)")
  for name, reason in report["unavailable"].items():
    lines.append(f"{name}: unavailable ({reason})")
  return "\n".join(lines)
