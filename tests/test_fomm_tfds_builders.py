"""Tests for the TFDS builders, the TFDS-backed store and the prepare command."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_pipelines import tfds_utils
from data_pipelines import video_io
from data_pipelines.fomm import layout as fomm_layout
from data_pipelines.fomm import tfds_builders
from data_pipelines.fomm import tfds_store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _make_source(root):
  """Noise frames (any codec loss would show), npz truth, one broken video."""
  rng = np.random.default_rng(0)
  for split, names in (("train", ["id0#a", "id0#b", "id1#a"]), ("test", ["id2#a"])):
    for name in names:
      video_io.write_video(root / split / name, rng.integers(0, 256, (3, 16, 16, 3), np.uint8))
  np.savez(root / "train" / "id1#a.npz",
           landmarks=rng.random((3, 68, 2)).astype(np.float32), pose=np.arange(3))
  (root / "train" / "broken.mp4").write_bytes(rng.bytes(500))
  (root / "train" / "empty").mkdir()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("fomm")
  _make_source(root)
  out = tmp_path_factory.mktemp("tfds")
  result = tfds_builders.build("synthetic_talking_faces", root, out)
  return root, out, result


def test_build_counts_videos_frames_and_skips(built):
  _, _, result = built
  assert result["splits"] == {"train": {"videos": 3, "frames": 9},
                              "test": {"videos": 1, "frames": 3}}
  assert result["skipped"] == 2
  assert result["skipped_reasons"] == {"unreadable video file": 1,
                                       "empty frames folder": 1}
  assert os.path.isfile(os.path.join(result["builder_dir"], tfds_store.INDEX_FILE))


def test_png_round_trip_is_exact_for_every_frame(built):
  root, out, _ = built
  folders = fomm_layout.FommVideoIndex(root)
  store = tfds_store.TfdsVideoStore(tfds_utils.find_builder_dir(out))
  assert store.splits == ("train", "test")
  for split in ("train", "test"):
    assert [v.name for v in store.videos(split)] == [v.name for v in folders.videos(split)]
    for video in folders.videos(split):
      record = store.find(video.name, split)
      assert store.num_frames(record) == 3
      np.testing.assert_array_equal(store.read_video(record), folders.read_video(video))
      np.testing.assert_array_equal(store.read_frames(record, [2, 0]),
                                    folders.read_frames(video, [2, 0]))


def test_metadata_is_stored_generically(built):
  root, out, _ = built
  store = tfds_store.TfdsVideoStore(tfds_utils.find_builder_dir(out))
  meta = store.metadata(store.find("id1#a", "train"))
  truth = np.load(root / "train" / "id1#a.npz")
  assert set(meta) == {"landmarks", "pose"}
  np.testing.assert_array_equal(meta["landmarks"], truth["landmarks"])
  assert store.metadata(store.find("id0#a", "train")) is None


def test_records_decode_with_plain_tfds(built):
  _, out, _ = built
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  source = tfds.builder_from_directory(tfds_utils.find_builder_dir(out)).as_data_source("test")
  example = source[0]
  assert example["name"] == b"id2#a" and example["identity"] == b"id2"
  assert np.stack(example["frames"]).shape == (3, 16, 16, 3)


def test_prepare_command_prints_one_json_line(tmp_path):
  source = tmp_path / "src"
  _make_source(source)
  proc = subprocess.run(
      [sys.executable, "-m", "data_pipelines.fomm.prepare", "--dataset", "hdtf",
       "--source", str(source), "--out", str(tmp_path / "out"), "--encoding", "jpeg"],
      cwd=REPO, capture_output=True, text=True, check=True, timeout=300)
  lines = proc.stdout.strip().splitlines()
  assert len(lines) == 1, proc.stdout
  result = json.loads(lines[0])
  assert result["dataset"] == "hdtf" and result["builder_dir"].endswith("hdtf/jpeg/1.0.0")
  assert result["splits"]["train"] == {"videos": 3, "frames": 9}
  assert result["skipped_reasons"] == {"unreadable video file": 1, "empty frames folder": 1}
