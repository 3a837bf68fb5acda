"""GRID (and video-folder) batch preprocessing, end to end on a tiny GRID-shaped corpus.

The corpus is made here: real MPEG-1 .mpg files (ffmpeg) of synthetic talking faces dlib finds,
GRID .align word timings, one video whose audio comes only from the separate .wav release, and one
corrupt .mpg that must be skipped and counted, never fatal. The output must be a speech-layout root
(and ArrayRecord shards) the stage-1 data pipeline reads; a second run must resume (skip the
finished videos) and count the bad file again.
"""
from __future__ import annotations

import json
import pathlib
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from data_pipelines import video_io
from data_pipelines.speech import grid
from data_pipelines.speech import layout as speech_layout
from data_pipelines.speech import pipelines as speech_pipelines
from data_pipelines.speech import store as speech_store
from data_pipelines.synthetic.engine import renderer as renderer_lib
from data_pipelines.synthetic.engine import scene as scene_lib
from synthetic_speech import speech_track, synthetic_clip  # tests/ is on sys.path under pytest.

NUM_FRAMES = 30  # 1.2 s: prepare_speaker needs 22+ frames.
RENDER_SIZE = 96  # dlib still finds the face.
FAST_FIT = dict(size=64, fit_steps=60, rigid_steps=20, focal_steps=20)
ALIGN = "0 5000 sil\n5000 12000 bin\n12000 18000 blue\n18000 30000 now\n30000 30000 sil\n"


def _mpg(work: pathlib.Path, seed: int, path: pathlib.Path, audio: bool = True) -> None:
  """An MPEG-1 .mpg (MP2 audio unless `audio` is False) of a synthetic talking face."""
  model, identity, motion = synthetic_clip(NUM_FRAMES, seed=seed, style="calm")
  renderer = renderer_lib.FaceRenderer(model, identity,
                                       scene_lib.sample_scene(np.random.default_rng(seed)),
                                       RENDER_SIZE)
  frames = np.stack([renderer.render(p, e, g).image
                     for p, e, g in zip(motion.pose, motion.exp_coeffs, motion.gaze)])
  wav = work / f"speech{seed}.wav"
  speech_track(NUM_FRAMES / 25, wav)
  mp4 = work / f"talk{seed}.mp4"
  video_io.write_video(mp4, frames, 25, audio_path=wav)
  path.parent.mkdir(parents=True, exist_ok=True)
  codec = ["-c:a", "mp2", "-ar", "32000"] if audio else ["-an"]
  subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(mp4),
                  "-c:v", "mpeg1video", "-q:v", "2", *codec, str(path)], check=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
  work = tmp_path_factory.mktemp("grid_src")
  root = work / "GRID"
  _mpg(work, 1, root / "s1" / "bbaf2n.mpg")
  _mpg(work, 2, root / "s2" / "video" / "mpg_6000" / "lgaz8p.mpg", audio=False)
  (root / "audio_25k" / "s2").mkdir(parents=True)
  speech_track(NUM_FRAMES / 25, root / "audio_25k" / "s2" / "lgaz8p.wav")
  (root / "s2" / "broken.mpg").write_bytes(b"\x00\x00\x01\xba not an mpeg stream" * 50)
  for speaker, clip in (("s1", "bbaf2n"), ("s2", "lgaz8p")):
    (root / "alignments" / speaker).mkdir(parents=True, exist_ok=True)
    (root / "alignments" / speaker / f"{clip}.align").write_text(ALIGN)
  return root


def test_read_align():
  words = grid.read_align_text(ALIGN)
  assert [w["word"] for w in words] == ["sil", "bin", "blue", "now", "sil"]
  assert words[1]["start"] == pytest.approx(0.2) and words[3]["end"] == pytest.approx(1.2)
  assert grid.spoken_text(words) == "bin blue now"
  with pytest.raises(ValueError, match="START END WORD"):
    grid.read_align_text("0 sil\n")


def test_grid_end_to_end_with_resume(corpus, tmp_path):
  out = tmp_path / "grid"
  lines = []
  summary = grid.run(corpus, out, workers=0, options=grid.PrepareOptions(**FAST_FIT),
                     tfds_out=tmp_path / "tfds", log=lines.append)
  assert (summary["videos"], summary["done"], summary["bad"], summary["skipped"]) == (3, 2, 1, 0), lines
  assert list(summary["bad_files"]) == ["s2/broken"]
  assert json.loads((out / grid.SUMMARY).read_text())["bad"] == 1
  clips = speech_layout.list_clips(out)
  assert [c.key for c in clips] == ["s1/bbaf2n", "s2/lgaz8p"]
  assert all(c.num_frames == NUM_FRAMES for c in clips)
  meta = json.loads((out / "s2" / "lgaz8p" / "meta.json").read_text())
  assert meta["text"] == "bin blue now" and meta["audio_source"].endswith("lgaz8p.wav")
  assert (out / speech_layout.FACE_MODEL).is_file()
  assert summary["tfds"]["clips"] == 2 and summary["tfds"]["frames"] == 2 * NUM_FRAMES
  assert not list(out.rglob(".*"))  # No temporary leftovers.
  for root in (out, summary["tfds"]["builder_dir"]):  # What the stage-1 trainer reads.
    config = speech_store.SpeechDataConfig(root=str(root), window=8, batch_size=2, read_threads=0,
                                           format="tfds" if root != out else "folders")
    batch = next(iter(speech_pipelines.train_dataset(config, process_index=0, process_count=1)))
    assert batch["audio"].shape[:2] == (2, 8) and np.isfinite(batch["mouth_vertices"]).all()

  again = grid.run(corpus, out, workers=0, options=grid.PrepareOptions(**FAST_FIT),
                   log=lines.append)
  assert (again["skipped"], again["done"], again["bad"], again["prepared_total"]) == (2, 0, 1, 2)


def test_folder_mode_and_bad_source(corpus, tmp_path):
  videos = tmp_path / "videos"
  videos.mkdir()
  (videos / "anna.mpg").write_bytes((corpus / "s1" / "bbaf2n.mpg").read_bytes())
  (videos / "notes.txt").write_text("not a video")
  summary = grid.run(videos, tmp_path / "hdtf", mode="folder", workers=0,
                     options=grid.PrepareOptions(**FAST_FIT), log=lambda line: None)
  assert (summary["videos"], summary["done"]) == (1, 1)
  assert [c.key for c in speech_layout.list_clips(tmp_path / "hdtf")] == ["anna/anna"]
  assert grid.main(["--source", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
