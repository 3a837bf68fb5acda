"""Tests for the synthetic dataset generator: layout, metadata, reproducibility."""

import json
import pathlib
import re

import numpy as np
import pytest

from data_pipelines import video_io
from data_pipelines.synthetic.engine import face_model as fm
from data_pipelines.synthetic import video_set
from data_pipelines.synthetic.engine import motion

SMALL = dict(num_identities=3, clips_per_identity=2, frames_per_clip=4, size=32,
             test_fraction=0.34, video_format="png")
META_KEYS = {"pose", "id_coeffs", "exp_coeffs", "exp_names", "mouth_vertices", "landmarks",
             "gaze", "occlusion", "surface", "visible_triangles", "fps"}


def _read_all(root: pathlib.Path) -> dict[str, tuple[np.ndarray, dict]]:
  out = {}
  for meta_path in sorted(root.glob("*/*.npz")):
    stem = meta_path.with_suffix("")
    video = stem.with_suffix(".mp4") if stem.with_suffix(".mp4").exists() else stem
    with np.load(meta_path) as data:
      meta = {k: data[k] for k in data.files}
    out[f"{meta_path.parent.name}/{stem.name}"] = (video_io.read_video(video), meta)
  return out


def _assert_same(a, b):
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_array_equal(a[name][0], b[name][0])
    for key in a[name][1]:
      np.testing.assert_array_equal(a[name][1][key], b[name][1][key])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("synth")
  info = video_set.generate_dataset(root, seed=7, workers=1, **SMALL)
  return root, info


def test_layout_and_metadata(dataset):
  root, info = dataset
  assert (root / "face_model.npz").exists()
  model = fm.FaceModel.load(root / "face_model.npz")
  on_disk = json.loads((root / "dataset_info.json").read_text())
  assert on_disk["num_frames"] == 3 * 2 * 4 == info["num_frames"]
  assert on_disk["frames_per_second"] > 0 and on_disk["size"] == 32
  identities = {}
  for split in ("train", "test"):
    videos = sorted(p for p in (root / split).iterdir() if p.suffix != ".npz")
    for video in videos:
      assert re.fullmatch(r"id\d{5}#\d{3}", video.name), video.name
      assert video.is_dir() and (video / "0000000.png").exists()
      assert len(list(video.glob("*.png"))) == 4
      identities.setdefault(split, set()).add(video.name.split("#")[0])
  assert identities["train"] and identities["test"]
  assert not identities["train"] & identities["test"]  # Test identities held out.
  assert info["test_identities"] == len(identities["test"])

  frames, meta = _read_all(root)["train/" + sorted((root / "train").glob("*.npz"))[0].stem]
  assert set(meta) == META_KEYS
  t, m = 4, len(model.mouth_vertex_ids)
  assert frames.shape == (t, 32, 32, 3) and frames.dtype == np.uint8
  assert meta["pose"].shape == (t, 6)
  assert meta["id_coeffs"].shape == (model.n_id,)
  assert meta["exp_coeffs"].shape == (t, model.n_exp)
  assert tuple(meta["exp_names"]) == model.exp_names
  assert meta["mouth_vertices"].shape == (t, m, 3)
  assert meta["landmarks"].shape == (t, 68, 2)
  assert meta["gaze"].shape == (t, 2) and meta["occlusion"].shape == (t,)
  assert float(meta["fps"]) == 25.0
  assert np.all((meta["landmarks"] >= 0) & (meta["landmarks"] < 32))
  # Ground truth is consistent with the model: mouth vertices come from the coefficients.
  expected = model.vertices(meta["id_coeffs"], meta["exp_coeffs"])[:, model.mouth_vertex_ids]
  np.testing.assert_allclose(meta["mouth_vertices"], expected, atol=1e-5)


def test_same_seed_is_bit_identical_and_seed_matters(dataset, tmp_path):
  root, _ = dataset
  again = tmp_path / "again"
  video_set.generate_dataset(again, seed=7, workers=1, **SMALL)
  _assert_same(_read_all(root), _read_all(again))
  other = tmp_path / "other"
  video_set.generate_dataset(other, seed=8, workers=1, **SMALL)
  a, b = _read_all(root), _read_all(other)
  common = sorted(a.keys() & b.keys())
  assert common
  assert any(not np.array_equal(a[k][0], b[k][0]) for k in common)


def test_worker_count_does_not_change_output(dataset, tmp_path):
  root, _ = dataset
  parallel = tmp_path / "parallel"
  info = video_set.generate_dataset(parallel, seed=7, workers=2, **SMALL)
  assert info["workers"] == 2
  _assert_same(_read_all(root), _read_all(parallel))


def test_mp4_and_mixed_formats(tmp_path):
  video_set.generate_dataset(tmp_path, seed=1, workers=1, num_identities=2, clips_per_identity=2,
                            frames_per_clip=3, size=32, test_fraction=0.5, video_format="mix")
  mp4s = list(tmp_path.glob("*/*.mp4"))
  folders = [p for p in tmp_path.glob("*/*#*") if p.is_dir()]
  assert mp4s and folders
  frames = video_io.read_video(mp4s[0])
  assert frames.shape == (3, 32, 32, 3)
  with pytest.raises(ValueError, match="even"):
    video_set.generate_dataset(tmp_path / "odd", num_identities=1, clips_per_identity=1,
                              frames_per_clip=1, size=33, video_format="mp4")


def test_clip_is_a_pure_function_of_its_seed():
  model = fm.build_face_model()
  kw = dict(seed=3, identity_index=5, clip_index=1, frames_per_clip=3, size=24, fps=25.0)
  f1, m1 = video_set.generate_clip(model, **kw)
  f2, m2 = video_set.generate_clip(model, **kw)
  np.testing.assert_array_equal(f1, f2)
  for k in m1:
    np.testing.assert_array_equal(m1[k], m2[k])
  # Clips of one identity share the identity but not the motion.
  _, m3 = video_set.generate_clip(model, **dict(kw, clip_index=2))
  np.testing.assert_array_equal(m1["id_coeffs"], m3["id_coeffs"])
  assert not np.array_equal(m1["pose"], m3["pose"])


def test_motion_is_reproducible_and_in_range():
  names = fm.EXPRESSION_NAMES
  a = motion.sample_clip_motion(np.random.default_rng(0), 75, names)
  b = motion.sample_clip_motion(np.random.default_rng(0), 75, names)
  np.testing.assert_array_equal(a.pose, b.pose)
  np.testing.assert_array_equal(a.exp_coeffs, b.exp_coeffs)
  exp = a.exp_coeffs
  assert exp.shape == (75, len(names))
  one_sided = [i for i, n in enumerate(names) if n != "mouth_shift"]
  assert exp[:, one_sided].min() >= 0 and exp.max() <= 1
  # Speech moves the jaw at syllable rate (a clip may be silent, so pool seeds).
  jaw = [motion.sample_clip_motion(np.random.default_rng(s), 75, names).exp_coeffs[:, 0]
         for s in range(4)]
  assert max(np.abs(np.diff(j)).mean() for j in jaw) > 0.02
  assert np.abs(np.diff(a.pose[:, 0])).max() < 0.1  # Smooth yaw.
  turn = motion.sample_clip_motion(np.random.default_rng(1), 75, names, style="turn")
  assert np.ptp(turn.pose[:, 0]) > 0.3
  # Unknown expression names of a foreign model stay zero.
  foreign = motion.sample_clip_motion(np.random.default_rng(0), 10, ("jaw_open", "sneer"))
  assert np.all(foreign.exp_coeffs[:, 1] == 0)


def test_head_motion_scales_the_movement_within_a_clip_only():
  """Same draws, amplitudes scaled: the per-frame deviations of yaw / pitch / tx / ty from the clip's
  own offsets grow by exactly the factor (away from the clip limits), expressions are untouched."""
  names = fm.EXPRESSION_NAMES
  for style in ("lively", "calm"):
    base = motion.sample_clip_motion(np.random.default_rng(3), 50, names, style=style)
    double = motion.sample_clip_motion(np.random.default_rng(3), 50, names, style=style, head_motion=2.0)
    np.testing.assert_array_equal(base.exp_coeffs, double.exp_coeffs)
    for axis in (0, 1, 3, 4):  # yaw, pitch, tx, ty
      offset = base.pose[0, axis] - (double.pose[0, axis] - base.pose[0, axis])  # the constant part
      np.testing.assert_allclose(double.pose[:, axis] - offset, 2 * (base.pose[:, axis] - offset),
                                 atol=1e-5)
    np.testing.assert_array_equal(base.pose[:, 5], double.pose[:, 5])  # scale: unchanged


def test_split_holds_out_identities():
  is_test = video_set.split_identities(50, 0.2, seed=0)
  assert is_test.sum() == 10
  np.testing.assert_array_equal(is_test, video_set.split_identities(50, 0.2, seed=0))
  assert video_set.split_identities(2, 0.01, seed=0).sum() == 1
  assert video_set.split_identities(5, 0.0, seed=0).sum() == 0


def test_command_line_prints_one_json_line(tmp_path, capsys):
  video_set.main(["--out", str(tmp_path), "--size", "24", "--num_identities", "2",
                 "--clips_per_identity", "1", "--frames_per_clip", "2", "--video_format", "png",
                 "--workers", "1"])
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 1
  summary = json.loads(lines[0])
  assert summary["num_frames"] == 4 and summary["frames_per_second"] > 0
