"""MemFace trains on the output of prepare_speaker (a short test run).

A short synthetic talking clip (a calm head of the face-fitting tests'
synthetic identities, with their speech track muxed into an mp4) goes through
the whole `prepare_speaker` command at the smallest crop size with a short
fit; the prepared folder is then the dataset root of a 2-step run of stage 1 (audio to expression) and of stage 2
(the neural renderer, which reads the crops in frames/ and the crop camera in
coeffs.npz). A folder holding coeffs.npz directly is one speaker with one
clip; split.json holds out its last frames.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from data_pipelines.speech import prepare_speaker
from data_pipelines.speech import layout as speech_layout
from data_pipelines import video_io
from data_pipelines.synthetic.engine import renderer as renderer_lib
from data_pipelines.synthetic.engine import scene as scene_lib
from talkingmem import train
from synthetic_speech import speech_track, synthetic_clip  # tests/ is on sys.path under pytest.

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_FRAMES = 33  # 1.3 s: 30 training frames, 3 held out (prepare_speaker needs 22+).
RENDER_SIZE = 96  # Source video side: dlib still finds the face.
CROP_SIZE = 64


def get_config(name: str, arg: str):
  spec = importlib.util.spec_from_file_location(f"{name}_config", REPO / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[pathlib.Path, dict]:
  work = tmp_path_factory.mktemp("speaker_training")
  model, identity, motion = synthetic_clip(NUM_FRAMES, seed=1, style="calm")
  scene = scene_lib.sample_scene(np.random.default_rng(1))
  renderer = renderer_lib.FaceRenderer(model, identity, scene, RENDER_SIZE)
  frames = np.stack([renderer.render(p, e, g).image
                     for p, e, g in zip(motion.pose, motion.exp_coeffs, motion.gaze)])
  speech_track(NUM_FRAMES / 25, work / "speech.wav")
  video_io.write_video(work / "talk.mp4", frames, 25, audio_path=work / "speech.wav")
  out = work / "prepared"
  summary = prepare_speaker.prepare(prepare_speaker.parse_args([
      "--video", str(work / "talk.mp4"), "--out", str(out), "--size", str(CROP_SIZE),
      "--min_seconds", "1", "--fit_steps", "150", "--rigid_steps", "50", "--focal_steps", "50",
      "--no_preview"]))
  return out, summary


def _train_steps(config, steps: int = 2) -> None:
  """`steps` steps, then the evaluation; no image or video summaries (time)."""
  config.train.update(num_steps=steps, log_every=1, eval_every=steps, image_every=10 ** 6,
                      checkpoint_every=steps, async_checkpoints=False)
  if "video_every" in config.train:
    config.train.video_every = 10 ** 6


def _metrics(workdir: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_prepared_folder_is_one_clip(prepared):
  out, summary = prepared
  assert summary["frames"]["kept"] == NUM_FRAMES
  clips = speech_layout.list_clips(out)
  assert len(clips) == 1 and clips[0].length == NUM_FRAMES


def test_stage1_trains_on_prepared_speaker(prepared, tmp_path):
  out, _ = prepared
  config = get_config("memface_a2e", "tiny")
  config.data.update(root=str(out), read_threads=0)
  config.data.synthetic = None
  _train_steps(config)
  workdir = tmp_path / "a2e"
  train.train_and_evaluate(config, str(workdir))
  lines = _metrics(workdir)
  losses = [l["loss/vertex"] for l in lines if "loss/vertex" in l]
  assert len(losses) == 2 and np.isfinite(losses).all()  # The mouth-vertex loss ran.
  summary = json.loads((workdir / "eval_a2e.json").read_text())
  assert summary["test"]["frames"] == NUM_FRAMES // 11  # split.json's held-out frames.
  assert np.isfinite(summary["test"]["vertex_rmse"])


def test_stage2_trains_on_prepared_speaker(prepared, tmp_path):
  out, _ = prepared
  config = get_config("memface_renderer", "tiny")
  config.data.update(root=str(out), read_threads=0)
  config.data.synthetic = None
  _train_steps(config)
  workdir = tmp_path / "renderer"
  train.train_and_evaluate(config, str(workdir))
  lines = _metrics(workdir)
  losses = [l["loss/l1"] for l in lines if "loss/l1" in l]
  assert len(losses) == 2 and np.isfinite(losses).all()
  summary = json.loads((workdir / "eval_summary.json").read_text())
  assert summary["test"]["num_frames"] >= 1 and np.isfinite(summary["test"]["l1"])
  # The explicit memory was built from the prepared speaker's training frames.
  assert list((workdir / "explicit_memory").glob("*.npz"))
