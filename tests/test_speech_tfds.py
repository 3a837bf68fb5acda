"""Tests for the SpeechClips TFDS builder and the TFDS-backed speech store."""

import numpy as np
import pytest

from data_pipelines.speech import layout as speech_layout
from data_pipelines.speech import pipelines as speech_pipelines
from data_pipelines.speech import store as speech_store
from data_pipelines.speech import tfds as speech_tfds

_T = 6  # Frames per clip (0.24 s of audio).


def _make_source(root):
  """2 speakers x 2 clips of noise (any rounding would show), with vertices and hubert."""
  rng = np.random.default_rng(0)
  for speaker in ("alice", "bob"):
    for clip in ("c0", "c1"):
      samples = _T * speech_layout.SAMPLE_RATE // speech_layout.FPS
      folder = speech_layout.write_clip(
          root / speaker / clip, audio=rng.uniform(-0.5, 0.5, samples),
          exp=rng.normal(size=(_T, 4)), id_coeffs=rng.normal(size=3),
          pose=rng.normal(size=(_T, 6)), mouth_vertices=rng.normal(size=(_T, 5, 3)),
          exp_names=["a", "b", "c", "d"])
      np.save(folder / "hubert.npy", rng.normal(size=(2 * _T, 8)).astype(np.float32))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("speech")
  _make_source(root)
  out = tmp_path_factory.mktemp("tfds")
  return root, out, speech_tfds.build(root, out)


def _config(root, **kwargs):
  return speech_store.SpeechDataConfig(root=str(root), feature="hubert", window=4,
                                       batch_size=2, read_threads=0, test_fraction=0.5, **kwargs)


def test_build_counts(built):
  _, out, result = built
  assert result["clips"] == 4 and result["speakers"] == 2
  assert result["frames"] == 4 * _T and result["samples"] == 4 * _T * 640
  assert not result["reused"]
  again = speech_tfds.build(built[0], out)
  assert again["reused"] and again["clips"] == 4


def test_every_clip_round_trips_exactly(built):
  root, _, result = built
  store = speech_tfds.TfdsSpeechStore(_config(result["builder_dir"], normalize_features=False))
  folders = speech_layout.list_clips(root)
  assert [c.key for c in store.clips] == [c.key for c in folders]
  for folder, clip in zip(folders, store.clips):
    got = store.read_clip(clip)
    coeffs = speech_layout.read_coeffs(folder.path / speech_layout.COEFFS)
    np.testing.assert_array_equal(got["audio"],
                                  speech_layout.read_audio(folder.path / speech_layout.AUDIO))
    for key in ("exp", "id", "pose"):
      np.testing.assert_array_equal(got[key], coeffs[key])
    assert got["exp_names"] == list(coeffs["exp_names"])
    np.testing.assert_array_equal(got["mouth_vertices"],
                                  np.load(folder.path / speech_layout.MOUTH_VERTICES))
    np.testing.assert_array_equal(got["frame_index"], np.arange(_T))
    np.testing.assert_array_equal(got["features"]["hubert"], np.load(folder.path / "hubert.npy"))


def test_store_matches_folder_store(built):
  root, out, _ = built
  folder = speech_store.SpeechStore(_config(root))
  tfds_store = speech_tfds.TfdsSpeechStore(_config(out))  # The --out dir works too.
  assert tfds_store.speakers == folder.speakers
  assert tfds_store.exp_names == folder.exp_names
  for split in ("train", "test"):
    assert [c.key for c in tfds_store.splits[split]] == [c.key for c in folder.splits[split]]
  for a, b in zip(folder.clips, tfds_store.clips):
    want, got = folder.window(a, 1, 4), tfds_store.window(b, 1, 4)
    assert want.keys() == got.keys()
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  batch = next(iter(speech_pipelines.train_dataset(_config(out), store=tfds_store,
                                                   process_index=0, process_count=1)))
  assert batch["audio"].shape == (2, 4, 16, 8) and batch["mouth_vertices"].shape == (2, 4, 5, 3)


def test_float32_audio_and_mel_features_match_folder_store(built, tmp_path):
  root, _, _ = built
  result = speech_tfds.build(root, tmp_path, audio_dtype="float32")
  config = speech_store.SpeechDataConfig(root=str(root), window=4, test_fraction=0.5)
  folder = speech_store.SpeechStore(config)
  store = speech_tfds.TfdsSpeechStore(dict(vars(config), root=result["builder_dir"]))
  clip = store.clips[-1]
  assert store.read_clip(clip)["audio"].dtype == np.float32
  np.testing.assert_array_equal(store.arrays(clip)["features"],
                                folder.arrays(folder.clips[-1])["features"])
  with pytest.raises(ValueError, match="audio_dtype"):
    speech_tfds.build(root, tmp_path, audio_dtype="int8")


def test_store_pickles_without_its_open_source(built):
  import pickle  # pylint: disable=g-import-not-at-top
  _, out, _ = built
  store = speech_tfds.TfdsSpeechStore(_config(out))
  clip = store.clips[0]
  want = store.window(clip, 0, 4)
  clone = pickle.loads(pickle.dumps(store))
  got = clone.window(clip, 0, 4)
  for key in want:
    np.testing.assert_array_equal(got[key], want[key])
