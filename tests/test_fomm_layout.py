"""Tests for data_pipelines.fomm.layout: listing, splits, skipping, frame access."""

import logging

import numpy as np
import pytest

from data_pipelines.fomm import layout as fomm_layout
from data_pipelines import video_io


def _frames(seed, num=5, size=16):
  return np.random.default_rng(seed).integers(0, 256, (num, size, size, 3), np.uint8)


@pytest.fixture
def vox_root(tmp_path):
  """train: id0 (png folder + mp4), id1 (gif, metadata); test: id2; + junk."""
  root = tmp_path / "vox"
  video_io.write_video(root / "train" / "folder", _frames(0))
  (root / "train" / "folder").rename(root / "train" / "id0#a#001.mp4")  # vox-png
  video_io.write_video(root / "train" / "id0#b.mp4", _frames(1, size=32))  # real mp4
  video_io.write_video(root / "train" / "id1#c.gif", _frames(2))
  np.savez(root / "train" / "id1#c.npz", landmarks=np.ones((5, 68, 2), np.float32))
  (root / "train" / "notes.txt").write_text("not a video")
  (root / "train" / "empty").mkdir()
  (root / "train" / "bad.mp4").write_bytes(np.random.default_rng(3).bytes(1000))
  video_io.write_video(root / "test" / "id2#d", _frames(4))
  return root


def test_lists_splits_identities_and_skips_broken(vox_root, caplog):
  with caplog.at_level(logging.WARNING):
    index = fomm_layout.FommVideoIndex(vox_root, image_size=16)
  assert [v.name for v in index.videos("train")] == ["id0#a#001", "id0#b", "id1#c"]
  assert [v.kind for v in index.videos("train")] == ["frames", "file", "gif"]
  assert index.identities("train") == ["id0", "id1"]
  assert list(index.videos_by_identity("train")) == ["id0", "id1"]
  assert [v.name for v in index.videos("test")] == ["id2#d"]
  assert index.skip_summary() == {"empty frames folder": 1, "unreadable video file": 1}
  warnings = [r for r in caplog.records if "skipped 2 videos" in r.getMessage()]
  assert len(warnings) == 1


def test_metadata_npz_is_exposed_not_listed(vox_root):
  index = fomm_layout.FommVideoIndex(vox_root)
  gif = index.find("id1#c")
  assert index.metadata(gif)["landmarks"].shape == (5, 68, 2)
  assert index.metadata(index.find("id0#b")) is None


def test_read_frames_matches_whole_video_for_every_kind(vox_root):
  index = fomm_layout.FommVideoIndex(vox_root)
  for video in index.videos("train") + index.videos("test"):
    full = video_io.read_video(video.path)
    assert index.num_frames(video) == len(full)
    np.testing.assert_array_equal(index.read_frames(video, [3, 0, 3]), full[[3, 0, 3]])


def test_png_folder_reads_only_requested_frames(vox_root):
  index = fomm_layout.FommVideoIndex(vox_root)
  video = index.find("id0#a#001")
  (vox_root / "train" / "id0#a#001.mp4" / "0000004.png").write_bytes(b"garbage")
  assert index.read_frames(video, [0, 1]).shape == (2, 16, 16, 3)
  with pytest.raises(video_io.VideoReadError):
    index.read_frames(video, [4])


def test_other_sizes_are_resized_with_one_warning(vox_root, caplog):
  index = fomm_layout.FommVideoIndex(vox_root, image_size=16)
  with caplog.at_level(logging.WARNING):
    for _ in range(3):
      assert index.read_frames(index.find("id0#b"), [0, 1]).shape == (2, 16, 16, 3)
  assert sum("are resized to" in r.getMessage() for r in caplog.records) == 1


def test_flat_root_gets_seeded_80_20_split(tmp_path):
  for i in range(10):
    video_io.write_video(tmp_path / f"v{i}", _frames(i, num=2, size=8))
  index = fomm_layout.FommVideoIndex(tmp_path)
  train = {v.name for v in index.videos("train")}
  test = {v.name for v in index.videos("test")}
  assert len(train) == 8 and len(test) == 2 and not train & test
  again = fomm_layout.FommVideoIndex(tmp_path)
  assert {v.name for v in again.videos("test")} == test
  assert test == set(fomm_layout.random_split([f"v{i}" for i in range(10)])["test"])


def test_runtime_failure_is_counted_and_warned_once(vox_root, caplog):
  index = fomm_layout.FommVideoIndex(vox_root)
  video = index.find("id0#b")
  with caplog.at_level(logging.WARNING):
    index.report_failure(video, "read failed: X")
    index.report_failure(video, "read failed: X")
  assert index.is_failed(video)
  assert index.skip_summary()["read failed: X"] == 1
  assert sum("failed while reading" in r.getMessage() for r in caplog.records) == 1


def test_decoded_cache_serves_the_same_frames_and_decodes_each_video_once(vox_root, monkeypatch):
  plain = fomm_layout.FommVideoIndex(vox_root, image_size=16)
  cached = fomm_layout.FommVideoIndex(vox_root, image_size=16, decoded_cache_mb=1)
  decodes = []
  real_read_video = video_io.read_video
  monkeypatch.setattr(video_io, "read_video", lambda path, *a, **k: decodes.append(path) or
                      real_read_video(path, *a, **k))
  for video in cached.videos("train"):
    for indices in ([3, 0, 3], [1], [4, 2]):
      np.testing.assert_array_equal(cached.read_frames(video, indices), plain.read_frames(video, indices))
  # Only the container videos (mp4, gif) went through the cache, each decoded once.
  assert sorted(str(p).rsplit("/", 1)[-1] for p in decodes) == ["id0#b.mp4", "id1#c.gif"]


def test_decoded_cache_evicts_least_recently_used_and_pickles_empty(vox_root):
  import pickle
  one_video = 5 * 16 * 16 * 3
  index = fomm_layout.FommVideoIndex(vox_root, image_size=16, decoded_cache_mb=1.5 * one_video / 2**20)
  mp4, gif = index.find("id0#b"), index.find("id1#c")
  index.read_frames(mp4, [0])
  index.read_frames(gif, [0])  # Over the limit: the mp4 (least recently used) goes.
  assert index.cache_usage() == ([gif.path], one_video)
  clone = pickle.loads(pickle.dumps(index))
  assert clone.cache_usage() == ([], 0)
  np.testing.assert_array_equal(clone.read_frames(gif, [2]), index.read_frames(gif, [2]))
