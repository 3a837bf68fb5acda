"""Evaluation protocols on a tiny random MCNet and synthetic faces: the eval command and pair lists."""
import csv
import json
import math
import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines.synthetic.video_set import generate_dataset
from talkingmem import checkpointing
from talkingmem.mcnet import animate
from talkingmem.mcnet import evaluate

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "configs"))
import mcnet as mcnet_configs  # noqa: E402

STEP = 3
FRAMES = 6
# Subprocesses lower with the same matmul precision as this process, so compilations are shared
# through the persistent cache (conftest) instead of repeated.
ENV = dict(os.environ, JAX_DEFAULT_MATMUL_PRECISION="highest")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> pathlib.Path:
  """A training workdir (config.json + Orbax checkpoint of random variables) over 2 test videos."""
  root = tmp_path_factory.mktemp("eval")
  generate_dataset(root / "data", num_identities=4, clips_per_identity=1, frames_per_clip=FRAMES, size=32,
                   seed=0, test_fraction=0.5, video_format="mp4", workers=1)
  config = mcnet_configs.get_config("tiny")
  config.data.root = str(root / "data")
  config.data.synthetic = None  # The data above is given, not generated with the config's settings.
  config.data.eval_batch_size = config.data.eval_chunk_size  # pairs reuse the reconstruction step
  variables = animate.random_variables(config.model)
  workdir = root / "workdir"
  manager = checkpointing.make_manager(workdir, async_save=False)
  state = {"step": jnp.int32(STEP), "params": variables["params"],
           "model_state": {k: v for k, v in variables.items() if k != "params"}}
  checkpointing.save(manager, STEP, state, None, force=True)
  manager.wait_until_finished()
  checkpointing.save_config(workdir, config)
  return workdir


def _read_csv(path: pathlib.Path) -> list[dict]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def test_eval_command_writes_report_and_csvs(workdir, tmp_path):
  out = tmp_path / "eval"
  proc = subprocess.run(
      [sys.executable, "-m", "talkingmem.main", "--mode=eval", f"--workdir={workdir}", f"--eval_dir={out}",
       "--face_metrics"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "reconstruction:" in proc.stdout and "lpips: unavailable" in proc.stdout
  report = json.loads((out / "report.json").read_text())
  total = 2 * FRAMES
  assert report["protocol"] == "reconstruction"
  assert report["num_videos"] == 2 and report["num_frames"] == total
  assert report["checkpoint"] == {"origin": "workdir", "path": str(workdir), "step": STEP}
  assert report["config"]["model"]["image_size"] == 32 and report["config"]["run"]["task"] == "mcnet"
  for name in ("l1", "psnr", "ssim"):
    m = report["metrics"][name]
    assert m["count"] == total and m["num_missing"] == 0 and math.isfinite(m["value"])
  # LPIPS without its backbone file: named as unavailable with the file to supply, never a number.
  assert "lpips" not in report["metrics"]
  assert "alexnet-owt-7be5be79.pth" in report["unavailable"]["lpips"]
  # Face metrics: frames without a face are counted, not averaged.
  for name in ("akd", "aed", "csim"):
    m = report["metrics"][name]
    assert m["count"] + m["num_missing"] == total
    assert m["value"] is None if m["count"] == 0 else math.isfinite(m["value"])
  assert "face-alignment" in report["face_metrics"]
  detector = report["detector_validation"]["akd_dlib_vs_ground_truth_landmarks"]
  assert detector["count"] + detector["num_missing"] == total
  if detector["count"]:
    assert 0 <= detector["value"] < 4  # px on 32x32 frames: dlib agrees with the renderer's landmarks
  per_video = _read_csv(out / "per_video.csv")
  assert len(per_video) == 2 and {r["frames"] for r in per_video} == {str(FRAMES)}
  per_frame = _read_csv(out / "per_frame.csv")
  assert len(per_frame) == total and {"video", "frame", "l1", "psnr", "ssim", "akd"} <= set(per_frame[0])


def test_pair_list_groups(workdir, tmp_path):
  loaded = animate.load_model(workdir=workdir)
  config = checkpointing.load_config(workdir)
  store_videos = sorted(p.stem for p in (pathlib.Path(config.data.root) / "test").glob("*.mp4"))
  a, b = store_videos
  pairs = tmp_path / "pairs.csv"
  pairs.write_text("source_video,source_frame,driving_video,driving_frame\n"
                   f"{a},0,{a},3\n{a},1,{b},2\n{b},0,{a},5\n")
  report = evaluate.evaluate(loaded, config.data, tmp_path / "out", pairs,
                             evaluate.EvalOptions(face_metrics=True))
  groups = report["groups"]
  assert report["protocol"] == "pairs" and report["num_pairs"] == 3
  assert groups["same_video"]["num_pairs"] == 1 and groups["cross_identity"]["num_pairs"] == 2
  assert {"l1", "psnr", "ssim", "akd", "aed", "csim"} <= set(groups["same_video"]["metrics"])
  # No ground truth across identities: identity (CSIM to the source) and motion (AKD to the driving frame).
  assert set(groups["cross_identity"]["metrics"]) == {"csim", "akd"}
  assert all(m["count"] + m["num_missing"] == 2 for m in groups["cross_identity"]["metrics"].values())
  assert "py-feat" in report["unavailable"]["aucon"] and "py-feat" in report["unavailable"]["prmse"]
  rows = _read_csv(tmp_path / "out" / "pairs.csv")
  assert [r["group"] for r in rows] == ["same_video", "cross_identity", "cross_identity"]
  assert rows[1]["l1"] == ""  # no pixel ground truth
  assert "cross_identity:" in evaluate.format_table(report)


def test_summaries_count_missing_frames():
  rows = [{"akd": 1.0}, {"akd": math.nan}, {"akd": 3.0}]
  assert evaluate.summarize(rows, ["akd"]) == {"akd": {"value": 2.0, "count": 2, "num_missing": 1}}
  assert evaluate.pair_group("v", "v", "a", "a") == "same_video"
  assert evaluate.pair_group("v", "w", "a", "a") == "same_identity"
  assert evaluate.pair_group("v", "w", "a", "b") == "cross_identity"


def test_masked_values_only_count_masked_pixels():

  gt = np.zeros((2, 16, 16, 3))
  pred = gt.copy()
  pred[:, :8] = 0.5  # Errors only in the top half.
  masks = np.zeros((2, 16, 16), bool)
  masks[0, :8] = True  # Frame 0: the mask covers exactly the wrong pixels; frame 1: an empty mask.
  values = evaluate.masked_values(pred, gt, masks)
  # float32 arithmetic: a few ulps.
  np.testing.assert_allclose(values["l1_disoccluded"][0], 0.5, rtol=1e-6)
  np.testing.assert_allclose(values["psnr_disoccluded"][0], -10 * np.log10(0.25), rtol=1e-6)
  assert np.isnan(values["l1_disoccluded"][1]) and np.isnan(values["psnr_disoccluded"][1])
  np.testing.assert_allclose(values["disoccluded_fraction"], [0.5, 0.0])
