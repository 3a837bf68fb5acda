"""prepare_speaker end to end on skimage's astronaut made into a talking video.

The clip: 260 frames (10.4 s, 25 fps, 160 px) panning slowly over the face,
with a short gap (3 grey frames: interpolated) and a long one (30 grey
frames: cut), and a synthetic audio track (espeak speech when available,
else an amplitude-modulated tone) muxed in by video_io.write_video.
"""

from __future__ import annotations

import json
import pathlib

import cv2
import numpy as np
import pytest
import skimage.data
from scipy.io import wavfile

from data_pipelines.speech import prepare_speaker
from data_pipelines import video_io
from data_pipelines.user_errors import run_cli
from synthetic_speech import speech_track  # tests/ is on sys.path under pytest.

NUM_FRAMES = 260
SHORT_GAP = (100, 103)
LONG_GAP = (150, 180)
SIZE = 128


def _astronaut_frames(num_frames: int, side: int = 160) -> np.ndarray:
  img = skimage.data.astronaut()
  frames = []
  for t in range(num_frames):
    dx = 8 * np.sin(2 * np.pi * t / 75)
    dy = 4 * np.cos(2 * np.pi * t / 60)
    k = side / 400
    warp = np.float32([[k, 0, -(56 + dx) * k], [0, k, -dy * k]])
    frames.append(cv2.warpAffine(img, warp, (side, side), flags=cv2.INTER_AREA,
                                 borderMode=cv2.BORDER_REFLECT))
  return np.stack(frames)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, pathlib.Path]:
  root = tmp_path_factory.mktemp("speaker")
  frames = _astronaut_frames(NUM_FRAMES)
  frames[slice(*SHORT_GAP)] = 128
  frames[slice(*LONG_GAP)] = 128
  speech_track(NUM_FRAMES / 25, root / "speech.wav",
               "Hello there, this is a short test of the speaker pipeline. " * 3, 220, 3)
  paths = dict(talk=root / "talk.mp4", silent=root / "silent.mp4", short=root / "short.mp4")
  video_io.write_video(paths["talk"], frames, 25, audio_path=root / "speech.wav")
  video_io.write_video(paths["silent"], frames[:60], 25)
  video_io.write_video(paths["short"], frames[:75], 25, audio_path=root / "speech.wav")
  return paths


@pytest.fixture(scope="module")
def prepared(videos, tmp_path_factory):
  out = tmp_path_factory.mktemp("prepared") / "speaker"
  argv = ["--video", str(videos["talk"]), "--out", str(out), "--size", str(SIZE),
          "--fit_steps", "400", "--focal_steps", "200"]
  summary = prepare_speaker.prepare(prepare_speaker.parse_args(argv))
  return out, summary


def test_layout(prepared):
  out, summary = prepared
  kept = NUM_FRAMES - (LONG_GAP[1] - LONG_GAP[0])
  frames = video_io.list_frame_files(out / "frames")
  assert len(frames) == kept
  assert video_io.read_image_file(frames[0]).shape == (SIZE, SIZE, 3)
  assert len(video_io.list_frame_files(out / "mouth_mask")) == kept

  index = np.load(out / "frame_index.npy")
  expected = np.setdiff1d(np.arange(NUM_FRAMES), np.arange(*LONG_GAP))
  np.testing.assert_array_equal(index, expected)

  coeffs = np.load(out / "coeffs.npz")
  model = np.load(out / "face_model.npz")
  n_id, n_exp = len(model["id_basis"]), len(model["exp_basis"])
  assert coeffs["id"].shape == (n_id,) and coeffs["exp"].shape == (kept, n_exp)
  assert coeffs["pose"].shape == (kept, 6) and coeffs["focal"] > 0
  assert coeffs["crop_focal"].shape == (kept,) and coeffs["crop_principal"].shape == (kept, 2)
  assert np.load(out / "mouth_vertices.npy").shape == (kept, len(model["mouth_vertex_ids"]), 3)
  lm = np.load(out / "landmarks.npy")
  fit_lm = np.load(out / "fit_landmarks.npy")
  assert lm.shape == fit_lm.shape == (kept, 68, 2)
  assert (lm[:, 36:48, 1].mean(1) < lm[:, 48:68, 1].mean(1)).all()  # Eyes above the mouth.
  assert np.linalg.norm(lm - fit_lm, axis=-1).mean() < 0.04 * SIZE
  boxes = np.load(out / "mouth_boxes.npy")
  assert boxes.shape == (kept, 4)
  assert (boxes[:, :2] <= lm[:, 48:68].min(1) + 1).all()
  assert (boxes[:, 2:] >= lm[:, 48:68].max(1) - 1).all()
  assert np.load(out / "crop_boxes.npy").shape == (kept, 4)

  rate, wave = wavfile.read(out / "audio.wav")
  assert rate == 16000 and wave.ndim == 1 and abs(len(wave) / rate - NUM_FRAMES / 25) < 0.05
  mel = np.load(out / "audio_mel.npy")
  assert mel.shape == (1 + len(wave) // 320, 80)
  assert np.load(out / "audio_features.npy").shape == (kept, 16, 80)

  split = json.loads((out / "split.json").read_text())
  assert len(split["val"]) == kept // 11
  assert split["train"] + split["val"] == list(range(kept))

  info = video_io.video_info(out / "preview.mp4")
  assert info["frames"] == kept and info["has_audio"] and info["size"] == (256, 512)
  assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))


def test_summary_counts(prepared):
  _, summary = prepared
  frames = summary["frames"]
  assert frames["total"] == NUM_FRAMES
  assert frames["dropped"] == LONG_GAP[1] - LONG_GAP[0]
  assert frames["dropped_by_reason"] == {"no_face": LONG_GAP[1] - LONG_GAP[0]}
  assert frames["interpolated"] == SHORT_GAP[1] - SHORT_GAP[0]
  assert frames["detected"] + frames["interpolated"] == frames["kept"]
  assert frames["cut_runs"] == [dict(start=LONG_GAP[0], stop=LONG_GAP[1], reason="no_face")]
  assert 0 < summary["fit"]["mean_residual_px"] < 0.04 * SIZE
  assert summary["split"] == dict(train=frames["kept"] - frames["kept"] // 11,
                                  val=frames["kept"] // 11)


def _refused(argv: list[str], capsys) -> str:
  """The command line's refusal: one `error:` line on stderr, exit code 2."""
  with pytest.raises(SystemExit) as exit_:
    run_cli(lambda: prepare_speaker.main(argv))
  assert exit_.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1
  return err


def test_refuses_video_without_audio(videos, tmp_path, capsys):
  err = _refused(["--video", str(videos["silent"]), "--out", str(tmp_path / "o"),
                  "--min_seconds", "1"], capsys)
  assert str(videos["silent"]) in err and "no audio stream" in err and "ffmpeg" in err
  assert not (tmp_path / "o").exists()


def test_refuses_short_video(videos, tmp_path, capsys):
  err = _refused(["--video", str(videos["short"]), "--out", str(tmp_path / "o")], capsys)
  assert str(videos["short"]) in err and "3.00 s long" in err and "10 s" in err
  assert "--min_seconds" in err
  assert not (tmp_path / "o").exists()


def test_refuses_bad_inputs(videos, tmp_path, capsys):
  err = _refused(["--video", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o")], capsys)
  assert "missing.mp4: no such file" in err
  np.savez(tmp_path / "bad.npz", mean=np.zeros((3, 3)))
  err = _refused(["--video", str(videos["short"]), "--out", str(tmp_path / "o"),
                  "--min_seconds", "1", "--face_model", str(tmp_path / "bad.npz")], capsys)
  assert "bad.npz" in err and "landmark_vertex_ids" in err
  (tmp_path / "full").mkdir()
  (tmp_path / "full" / "x").write_text("x")
  err = _refused(["--video", str(videos["short"]), "--out", str(tmp_path / "full"),
                  "--min_seconds", "1"], capsys)
  assert "already exists" in err and "--overwrite" in err
  assert not list(tmp_path.glob(".full.*"))  # No work folder left behind.
