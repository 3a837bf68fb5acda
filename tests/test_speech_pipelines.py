"""Speech layout and Grain pipelines: validation, splits, frame/feature alignment, determinism."""
import json

import numpy as np
import pytest

from data_pipelines.speech import layout as speech_layout
from data_pipelines.speech import pipelines as sp
from data_pipelines import audio as audio_lib
from synthetic_speech import make_toy_dataset  # tests/ is on sys.path under pytest.

@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
  return make_toy_dataset(tmp_path_factory.mktemp("toy_speech"))


def _config(root, **kw):
  defaults = dict(root=str(root), window=8, batch_size=4, test_fraction=0.34, read_threads=0,
                  exp_components=("jaw_open", "lip_round", "lip_stretch"))
  return sp.SpeechDataConfig(**{**defaults, **kw})


@pytest.fixture(scope="module")
def store(toy_root):
  return sp.SpeechStore(_config(toy_root))


def test_split_by_held_out_clips_and_speakers(store, toy_root):
  train, test = store.splits["train"], store.splits["test"]
  assert len(train) == 6 and len(test) == 3
  assert not {c.key for c in train} & {c.key for c in test}
  assert {c.speaker for c in test} == {"s0", "s1", "s2"}  # One held-out clip per speaker.
  clips = speech_layout.list_clips(toy_root)
  again = speech_layout.split_clips(list(reversed(clips)), 0.34)
  assert {c.key for c in again["test"]} == {c.key for c in test}  # Order-independent.
  unseen = speech_layout.split_clips(clips, 0.34, test_speakers=["s1"])
  assert {c.speaker for c in unseen["test_unseen"]} == {"s1"}
  assert "s1" not in {c.speaker for c in unseen["train"]}
  with pytest.raises(ValueError, match="leaves no training speaker"):
    speech_layout.split_clips(clips, 0.34, test_speakers=3)


def test_windows_align_frames_with_features(store, toy_root):
  clip = store.splits["train"][0]
  w = store.window(clip, 5, 8)
  assert w["audio"].shape == (8, 16, 80) and w["exp"].shape == (8, 3)
  # Independent reference: log-mel of the wav, standardised, frame t <-> feature 2t (+-8).
  wave = speech_layout.read_audio(clip.path / "audio.wav")
  mel = np.asarray(audio_lib.log_mel_spectrogram(wave))
  mean, std = store.feature_standardisation()
  mel = (mel - mean) / std
  for i, t in enumerate(range(5, 13)):
    idx = np.clip(np.arange(2 * t - 8, 2 * t + 8), 0, len(mel) - 1)
    np.testing.assert_allclose(w["audio"][i], mel[idx], atol=2e-3)
  coeffs = np.load(clip.path / "coeffs.npz")
  np.testing.assert_array_equal(w["exp"], coeffs["exp"][5:13, :3])
  np.testing.assert_array_equal(w["mouth_vertices"],
                                np.load(clip.path / "mouth_vertices.npy")[5:13])
  assert w["mask"].all() and w["speaker"] == store.speakers.index(clip.speaker)
  tail = store.window(clip, clip.end - 3, 8)  # Past the end: repeated and masked.
  assert tail["mask"].tolist() == [True] * 3 + [False] * 5
  np.testing.assert_array_equal(tail["exp"][3:], np.repeat(tail["exp"][2:3], 5, 0))


def test_precomputed_deepspeech_and_hubert_features(tmp_path):
  root = make_toy_dataset(tmp_path, speakers=1, clips=2)
  for c in ("c0", "c1"):
    t = len(np.load(root / "s0" / c / "coeffs.npz")["exp"])
    ds = np.arange(t * 16 * 29, dtype=np.float32).reshape(t, 16, 29)
    np.save(root / "s0" / c / "deepspeech.npy", ds)
    hubert = np.tile(np.arange(2 * t, dtype=np.float32)[:, None], (1, 6))
    np.save(root / "s0" / c / "hubert.npy", hubert)
  ds_store = sp.SpeechStore(_config(root, feature="deepspeech", normalize_features=False))
  clip = ds_store.clips[0]
  w = ds_store.window(clip, 2, 4)
  np.testing.assert_array_equal(w["audio"], np.load(clip.path / "deepspeech.npy")[2:6])
  hu_store = sp.SpeechStore(_config(root, feature="hubert", normalize_features=False,
                                    feature_window=4))
  w = hu_store.window(hu_store.clips[0], 3, 2)
  np.testing.assert_array_equal(w["audio"][:, :, 0], [[4, 5, 6, 7], [6, 7, 8, 9]])


def test_train_batches_are_deterministic_resumable_and_sharded(store, toy_root):
  cfg = _config(toy_root)
  batches = lambda ds, n: [b for _, b in zip(range(n), iter(ds))]  # noqa: E731
  a = batches(sp.train_dataset(cfg, store=store, process_index=0, process_count=1), 3)
  b = batches(sp.train_dataset(cfg, store=store, process_index=0, process_count=1), 3)
  assert set(a[0]) >= {"audio", "exp", "mouth_vertices", "id", "speaker", "mask", "clip", "start"}
  assert a[0]["audio"].shape == (4, 8, 16, 80) and a[0]["audio"].dtype == np.float32
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  it = iter(sp.train_dataset(cfg, store=store, process_index=0, process_count=1))
  next(it)
  state = it.get_state()
  expected = next(it)
  it.set_state(state)
  np.testing.assert_array_equal(next(it)["exp"], expected["exp"])
  # Two processes: local batches of 2 whose union is the single-process global batch.
  parts = [batches(sp.train_dataset(cfg, store=store, process_index=i, process_count=2), 1)[0]
           for i in range(2)]
  interleaved = np.stack([parts[0]["start"], parts[1]["start"]], 1).reshape(-1)
  np.testing.assert_array_equal(interleaved, a[0]["start"])
  np.testing.assert_array_equal(np.stack([parts[0]["audio"], parts[1]["audio"]], 1).reshape(
      a[0]["audio"].shape), a[0]["audio"])
  other_seed = batches(sp.train_dataset(_config(toy_root, seed=1), store=store, process_index=0,
                                        process_count=1), 1)[0]
  assert not np.array_equal(other_seed["start"], a[0]["start"]) or \
      not np.array_equal(other_seed["clip"], a[0]["clip"])


def test_worker_processes_give_the_same_batches(store, toy_root):
  """The store pickles into Grain workers (without its lock and cache) and reads the same."""
  expected = next(iter(sp.train_dataset(_config(toy_root), store=store, process_index=0,
                                        process_count=1)))
  it = iter(sp.train_dataset(_config(toy_root, worker_count=1), store=store, process_index=0,
                             process_count=1))
  try:
    got = next(it)
  finally:
    it.close()
  for key in expected:
    np.testing.assert_array_equal(got[key], expected[key])


@pytest.mark.parametrize("count", [1, 2])
def test_eval_covers_every_held_out_frame_once(store, toy_root, count):
  cfg = _config(toy_root)
  seen, num_batches = {}, []
  for index in range(count):
    batches = list(sp.eval_dataset(cfg, store=store, process_index=index, process_count=count))
    num_batches.append(len(batches))
    for b in batches:
      assert b["audio"].shape[0] == 4 // count
      for clip, start, mask, valid in zip(b["clip"], b["start"], b["mask"], b["valid"]):
        assert valid or not mask.any()
        for f in np.flatnonzero(mask):
          key = (int(clip), int(start) + int(f))
          assert key not in seen
          seen[key] = True
  assert len(set(num_batches)) == 1
  assert len(seen) == sum(c.length for c in store.splits["test"])


def test_layout_errors_name_the_file(tmp_path):
  root = make_toy_dataset(tmp_path, speakers=1, clips=2)
  clip = root / "s0" / "c1"
  np.save(clip / "mouth_vertices.npy", np.zeros((3, 6, 3), np.float32))
  with pytest.raises(speech_layout.SpeechLayoutError, match=r"c1/mouth_vertices.npy: shape"):
    speech_layout.list_clips(root)
  speech_layout.write_clip(clip, np.zeros(1600), np.zeros((40, 5)), np.zeros(4))
  with pytest.raises(speech_layout.SpeechLayoutError, match=r"c1/audio.wav: covers 3 frames"):
    speech_layout.list_clips(root)
  np.savez(clip / "coeffs.npz", expression=np.zeros((3, 5)))
  with pytest.raises(speech_layout.SpeechLayoutError, match=r"c1/coeffs.npz: needs an 'exp'"):
    speech_layout.list_clips(root)
  (tmp_path / "empty").mkdir()
  with pytest.raises(speech_layout.SpeechLayoutError, match="no clips"):
    speech_layout.list_clips(tmp_path / "empty")


def test_single_clip_speaker_folders_split_by_time(tmp_path):
  """A speaker folder holding the files directly is one clip, held out by time."""
  root = make_toy_dataset(tmp_path / "many", speakers=1, clips=1, lengths=(100, 101))
  single = tmp_path / "data" / "obama"
  single.parent.mkdir(parents=True)
  (root / "s0" / "c0").rename(single)
  clips = speech_layout.list_clips(tmp_path / "data")
  assert [(c.speaker, c.num_frames) for c in clips] == [("obama", 100)]
  split = speech_layout.split_clips(clips, test_fraction=0.1)
  assert [(c.start, c.end) for c in split["train"]] == [(0, 90)]
  assert [(c.start, c.end) for c in split["test"]] == [(90, 100)]
  (single / "split.json").write_text(json.dumps({"train": [[10, 60]], "test": [[70, 100]]}))
  split = speech_layout.split_clips(clips, test_fraction=0.1)
  assert [(c.start, c.end) for c in split["test"]] == [(70, 100)]
  cfg = _config(tmp_path / "data", face_model=str(root / "face_model.npz"), test_fraction=0.1)
  windows = list(sp.eval_dataset(cfg, process_index=0, process_count=1))
  starts = sorted(int(s) for b in windows for s, v in zip(b["start"], b["valid"]) if v)
  assert starts == list(range(70, 100, 8))
  train = next(iter(sp.train_dataset(cfg, process_index=0, process_count=1)))
  assert ((train["start"] >= 10) & (train["start"] + 8 <= 60)).all()


def test_reads_prepare_speaker_output(tmp_path):
  """prepare_speaker's folder: dropped frames (frame_index), its own face_model.npz, split.json of
  frame indices, audio_features.npy windows."""
  toy = make_toy_dataset(tmp_path / "toy", speakers=1, clips=1, lengths=(100, 101))
  folder = tmp_path / "speakers" / "may"
  folder.parent.mkdir()
  (toy / "s0" / "c0").rename(folder)
  (toy / "face_model.npz").rename(folder / "face_model.npz")
  keep = np.setdiff1d(np.arange(100), np.arange(40, 45))  # A 5-frame cut (no face).
  coeffs = dict(np.load(folder / "coeffs.npz"))
  np.savez(folder / "coeffs.npz", **{**coeffs, "exp": coeffs["exp"][keep],
                                     "pose": coeffs["pose"][keep], "focal": np.float32(900)})
  np.save(folder / "mouth_vertices.npy", np.load(folder / "mouth_vertices.npy")[keep])
  np.save(folder / "frame_index.npy", keep)
  np.save(folder / "audio_features.npy", np.arange(95, dtype=np.float32)[:, None, None] *
          np.ones((1, 16, 80), np.float32))
  (folder / "split.json").write_text(json.dumps({"train": list(range(86)),
                                                 "val": list(range(86, 95))}))
  (folder / "frames").mkdir()
  clips = speech_layout.list_clips(tmp_path / "speakers")
  assert [(c.key, c.num_frames) for c in clips] == [("may/may", 95)]
  cfg = _config(tmp_path / "speakers", normalize_features=False)
  store = sp.SpeechStore(cfg)
  assert store.face_model is not None  # Found in the speaker folder.
  assert [(c.start, c.end) for c in store.splits["train"]] == [(0, 86)]
  assert [(c.start, c.end) for c in store.splits["test"]] == [(86, 95)]
  w = store.window(store.clips[0], 38, 4)  # Kept frames 38, 39 | 40, 41 = source 45, 46.
  mel = np.asarray(audio_lib.log_mel_spectrogram(speech_layout.read_audio(folder / "audio.wav")))
  for i, src in enumerate([38, 39, 45, 46]):
    np.testing.assert_allclose(w["audio"][i], mel[2 * src - 8: 2 * src + 8], atol=2e-3)
  windows = sp.SpeechStore(_config(tmp_path / "speakers", feature="windows",
                                   normalize_features=False))
  np.testing.assert_array_equal(windows.window(windows.clips[0], 38, 4)["audio"][:, 0, 0],
                                [38, 39, 40, 41])
  np.save(folder / "frame_index.npy", keep[::-1].copy())
  with pytest.raises(speech_layout.SpeechLayoutError, match="strictly increasing"):
    speech_layout.list_clips(tmp_path / "speakers")
