"""Tests for data_pipelines.video_io: formats, conversions, errors, audio."""

import wave

import cv2
import numpy as np
import pytest

from data_pipelines import video_io


def _moving_blob(num_frames=6, height=32, width=48):
  """Smooth frames (H.264 friendly) with a blob moving right."""
  yy, xx = np.mgrid[:height, :width]
  frames = []
  for t in range(num_frames):
    blob = np.exp(-((xx - 8 - 4 * t) ** 2 + (yy - height / 2) ** 2) / 40.0)
    frame = np.stack([blob * 200 + 30, 0 * blob + 90, 150 - blob * 100], -1)
    frames.append(frame.astype(np.uint8))
  return np.stack(frames)


def _write_tone(path, seconds=1.0, rate=16000):
  t = np.arange(int(seconds * rate)) / rate
  samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
  with wave.open(str(path), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes(samples.tobytes())


def test_png_folder_round_trip_is_exact(tmp_path):
  frames = np.random.default_rng(0).integers(0, 256, (5, 16, 24, 3), np.uint8)
  video_io.write_video(tmp_path / "clip", frames)
  assert sorted(p.name for p in (tmp_path / "clip").iterdir())[0] == "0000000.png"
  np.testing.assert_array_equal(video_io.read_video(tmp_path / "clip"), frames)
  assert video_io.video_info(tmp_path / "clip") == dict(
      frames=5, fps=None, size=(16, 24), has_audio=False)


def test_folder_overwrite_is_atomic_and_leaves_no_temp(tmp_path):
  video_io.write_video(tmp_path / "clip", np.zeros((4, 8, 8, 3), np.uint8))
  video_io.write_video(tmp_path / "clip", np.ones((2, 8, 8, 3), np.uint8))
  assert len(video_io.read_video(tmp_path / "clip")) == 2
  assert [p.name for p in tmp_path.iterdir()] == ["clip"]


def test_mp4_round_trip_is_close(tmp_path):
  frames = _moving_blob()
  video_io.write_video(tmp_path / "a.mp4", frames, fps=10)
  out = video_io.read_video(tmp_path / "a.mp4")
  assert out.shape == frames.shape and out.dtype == np.uint8
  assert np.abs(out.astype(int) - frames).mean() < 4
  info = video_io.video_info(tmp_path / "a.mp4")
  assert info == dict(frames=6, fps=10.0, size=(32, 48), has_audio=False)


def test_gif_round_trip(tmp_path):
  frames = np.zeros((3, 16, 16, 3), np.uint8)  # Few colours: GIF is lossless.
  for t in range(3):
    frames[t, :, 5 * t:5 * t + 4] = (255, 40, 10)
  video_io.write_video(tmp_path / "a.gif", frames, fps=5)
  np.testing.assert_array_equal(video_io.read_video(tmp_path / "a.gif"), frames)
  assert video_io.video_info(tmp_path / "a.gif")["frames"] == 3


def test_strip_and_resize(tmp_path):
  frames = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 3), np.uint8)
  strip = np.concatenate(list(frames), axis=1)  # (8, 32, 3).
  cv2.imwrite(str(tmp_path / "s.png"), strip[..., ::-1])
  np.testing.assert_array_equal(video_io.read_video(tmp_path / "s.png"), frames)
  assert video_io.read_video(tmp_path / "s.png", size=(4, 6)).shape == (4, 4, 6, 3)


def test_gray_rgba_and_16bit_frames_become_rgb_uint8(tmp_path):
  folder = tmp_path / "mixed"
  folder.mkdir()
  cv2.imwrite(str(folder / "0000000.png"), np.full((8, 8), 100, np.uint8))
  cv2.imwrite(str(folder / "0000001.png"), np.full((8, 8, 4), (10, 20, 30, 0), np.uint8))
  cv2.imwrite(str(folder / "0000002.png"), np.full((8, 8, 3), 65535, np.uint16))
  out = video_io.read_video(folder)
  assert out.shape == (3, 8, 8, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out[0, 0, 0], (100, 100, 100))
  np.testing.assert_array_equal(out[1, 0, 0], (30, 20, 10))  # BGRA on disk.
  np.testing.assert_array_equal(out[2, 0, 0], (255, 255, 255))


@pytest.mark.parametrize("make", ["random_mp4", "empty_mp4", "empty_folder", "missing"])
def test_unreadable_inputs_raise_video_read_error(tmp_path, make):
  path = {"random_mp4": tmp_path / "x.mp4", "empty_mp4": tmp_path / "y.mp4",
          "empty_folder": tmp_path / "z", "missing": tmp_path / "nope.mp4"}[make]
  if make == "random_mp4":
    path.write_bytes(np.random.default_rng(0).bytes(2000))
  elif make == "empty_mp4":
    path.write_bytes(b"")
  elif make == "empty_folder":
    path.mkdir()
  with pytest.raises(video_io.VideoReadError) as err:
    video_io.read_video(path)
  assert err.value.path == str(path) and err.value.reason


def test_audio_mux_and_extract(tmp_path):
  _write_tone(tmp_path / "tone.wav", seconds=1.0)
  video_io.write_video(tmp_path / "talk.mp4", np.repeat(_moving_blob(5), 5, 0),
                       fps=25, audio_path=tmp_path / "tone.wav")
  info = video_io.video_info(tmp_path / "talk.mp4")
  assert info["has_audio"] and info["frames"] == 25
  video_io.extract_audio(tmp_path / "talk.mp4", tmp_path / "out.wav", sample_rate=8000)
  with wave.open(str(tmp_path / "out.wav")) as w:
    assert (w.getnchannels(), w.getframerate()) == (1, 8000)
    assert abs(w.getnframes() - 8000) < 800
  video_io.write_video(tmp_path / "silent.mp4", _moving_blob(2))
  with pytest.raises(video_io.VideoReadError):
    video_io.extract_audio(tmp_path / "silent.mp4", tmp_path / "o.wav")
