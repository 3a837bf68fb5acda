"""Tests for pair sampling, augmentation and the Grain pipelines."""

import jax
import ml_collections
import numpy as np
import pytest

from data_pipelines import grain_utils
from data_pipelines import video_io
from data_pipelines.fomm import augmentation
from data_pipelines.fomm import layout as fomm_layout
from data_pipelines.fomm import pairs as pair_source
from data_pipelines.fomm import pipelines
from talkingmem import sharding

NUM_IDS, VIDS_PER_ID, FRAMES, SIZE = 4, 2, 6, 16


def _coded_frame(identity, video, t):
  """Constant colour: R codes the frame, G the identity, B the video."""
  return np.full((SIZE, SIZE, 3), (10 * t + 5, 40 * identity + 10, 100 * video + 20), np.uint8)


def _decode(frame):
  """(identity, video, t) from a float frame made by `_coded_frame`."""
  r, g, b = np.round(frame[0, 0] * 255).astype(int)
  return (g - 10) // 40, (b - 20) // 100, (r - 5) // 10


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp("coded")
  for split in ("train", "test"):
    for i in range(NUM_IDS):
      for v in range(VIDS_PER_ID):
        frames = np.stack([_coded_frame(i, v, t) for t in range(FRAMES)])
        video_io.write_video(root / split / f"id{i}#v{v}", frames)
  return root


@pytest.fixture(scope="module")
def store(root):
  return fomm_layout.FommVideoIndex(root, image_size=SIZE)


def _config(root, **kwargs):
  defaults = dict(root=str(root), image_size=SIZE, batch_size=4, num_repeats=2,
                  augment=False, read_threads=0, seed=3, eval_chunk_size=4)
  return pipelines.DataConfig(**{**defaults, **kwargs})


# -- Pair source ----------------------------------------------------------------


def test_identity_sampling_and_temporal_order(store):
  source = pair_source.TrainPairSource(store, num_repeats=2, augment=False, seed=0)
  assert len(source) == NUM_IDS * 2
  for key in range(40):
    slot = key % len(source)
    ex = source.example(slot, key)
    assert ex["source"].dtype == np.float32 and ex["source"].shape == (SIZE, SIZE, 3)
    (i_s, v_s, t_s), (i_d, v_d, t_d) = _decode(ex["source"]), _decode(ex["driving"])
    assert source.group_name(slot) == f"id{i_s}"
    assert (i_s, v_s) == (i_d, v_d)  # Both frames from one video.
    assert t_s <= t_d  # Source earlier in time.


def test_examples_depend_only_on_seed_and_index(store):
  a = pair_source.TrainPairSource(store, seed=5)
  b = pair_source.TrainPairSource(store, seed=5)
  c = pair_source.TrainPairSource(store, seed=6)
  for i in (0, 3, 17):
    np.testing.assert_array_equal(a[i]["driving"], b[i]["driving"])
  assert any(not np.array_equal(a[i]["source"], c[i]["source"]) for i in range(8))


def test_corrupt_video_while_sampling_falls_back_and_is_counted(tmp_path):
  for i in range(3):
    video_io.write_video(tmp_path / "train" / f"id{i}#v0",
                         np.stack([_coded_frame(i, 0, t) for t in range(FRAMES)]))
  for png in (tmp_path / "train" / "id1#v0").iterdir():
    png.write_bytes(b"not a png")  # Listed fine, fails when decoded.
  store = fomm_layout.FommVideoIndex(tmp_path)
  source = pair_source.TrainPairSource(store, augment=False, num_repeats=4)
  identities = {_decode(source[k]["source"])[0] for k in range(len(source))}
  assert identities == {0, 2}
  assert store.skip_summary() == {"read failed: VideoReadError": 1}


# -- Augmentation ---------------------------------------------------------------


def test_augmentation_is_identical_for_both_frames(tmp_path):
  """Videos of one repeated asymmetric frame: any shared augmentation keeps s == d."""
  rng = np.random.default_rng(0)
  for i in range(2):
    frame = rng.integers(0, 256, (SIZE, SIZE, 3), np.uint8)
    video_io.write_video(tmp_path / "train" / f"id{i}", np.stack([frame] * 4))
  store = fomm_layout.FommVideoIndex(tmp_path)
  source = pair_source.TrainPairSource(store, augment=True, num_repeats=10)
  originals = [pair_source.to_float(store.read_frames(v, [0])[0]) for v in store.videos()]
  changed = 0
  for k in range(len(source)):
    ex = source[k]
    np.testing.assert_array_equal(ex["source"], ex["driving"])
    assert 0.0 <= ex["source"].min() and ex["source"].max() <= 1.0
    changed += not any(np.allclose(ex["source"], o) for o in originals)
  assert changed == len(source)  # Jitter always changes the colours a bit.


def test_horizontal_flip_applies_to_both_frames():
  pair = np.random.default_rng(1).random((2, 8, 8, 3)).astype(np.float32)
  config = augmentation.AugmentConfig(True, False, 0.0, 0.0, 0.0, 0.0)
  flipped = 0
  for seed in range(20):
    out = augmentation.augment(pair, config, np.random.default_rng(seed))
    if np.array_equal(out, pair[:, :, ::-1]):
      flipped += 1
    else:
      np.testing.assert_array_equal(out, pair)
  assert 0 < flipped < 20


def test_time_flip_swaps_source_and_driving():
  pair = np.random.default_rng(2).random((2, 8, 8, 3)).astype(np.float32)
  config = augmentation.AugmentConfig(False, True, 0.0, 0.0, 0.0, 0.0)
  outs = [augmentation.augment(pair, config, np.random.default_rng(s)) for s in range(20)]
  swapped = sum(np.array_equal(o, pair[::-1]) for o in outs)
  assert 0 < swapped < 20
  assert all(np.array_equal(o, pair) or np.array_equal(o, pair[::-1]) for o in outs)


def test_colour_jitter_uses_the_same_parameters_for_both_frames():
  pair = np.random.default_rng(3).uniform(0.2, 0.7, (2, 8, 8, 3)).astype(np.float32)
  params = augmentation.sample_params(augmentation.AugmentConfig(), np.random.default_rng(4))
  joint = augmentation.apply_params(pair, params)
  one_by_one = [augmentation.apply_params(pair[i:i + 1], params)[0] for i in range(2)]
  order = [1, 0] if params.time_flip else [0, 1]
  np.testing.assert_allclose(joint[order], np.stack(one_by_one), atol=1e-6)
  # Pixel relation: brightness scales both frames by one factor.
  bright = augmentation.AugmentConfig(False, False, 0.1, 0.0, 0.0, 0.0)
  out = augmentation.augment(pair, bright, np.random.default_rng(5))
  np.testing.assert_allclose(out[1] / out[0], pair[1] / pair[0], rtol=1e-5)
  assert not np.allclose(out, pair)


# -- Training pipeline ----------------------------------------------------------


def test_process_shards_are_disjoint_covers_of_each_epoch():
  num_slots, count = 12, 3
  shards = [grain_utils.train_slot_dataset(num_slots, seed=0, process_index=p,
                                           process_count=count, num_epochs=2)
            for p in range(count)]
  elements = [list(s) for s in shards]
  positions = [k for e in elements for k, _ in e]
  assert sorted(positions) == list(range(2 * num_slots))  # Disjoint, complete.
  for epoch in range(2):
    slots = [slot for e in elements for k, slot in e if k // num_slots == epoch]
    assert sorted(slots) == list(range(num_slots))
  first = [slot for e in elements for k, slot in sorted(e) if k < num_slots]
  assert first != list(range(num_slots))  # Shuffled.


def test_train_batches_shape_and_local_share(root, store):
  cfg = _config(root, batch_size=8)
  batch = next(iter(pipelines.train_dataset(cfg, store=store, process_index=1,
                                            process_count=2)))
  assert set(batch) == {"source", "driving"}
  assert batch["source"].shape == (4, SIZE, SIZE, 3)
  assert batch["driving"].dtype == np.float32
  with pytest.raises(ValueError):
    pipelines.train_dataset(_config(root, batch_size=3), store=store, process_count=2,
                            process_index=0)


def test_iterator_state_restores_the_same_next_batch(root, store):
  cfg = _config(root, augment=True)
  it = pipelines.train_iterator(cfg, store=store)
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = next(it)
  restored = pipelines.train_iterator(cfg, state=state, store=store)
  got = next(restored)
  for key in expected:
    np.testing.assert_array_equal(got[key], expected[key])


def test_threads_and_worker_processes_give_the_same_batches(root, store):
  cfg = _config(root, augment=True)
  reference = [b["driving"] for _, b in zip(range(3), pipelines.train_dataset(cfg, store=store))]
  threaded = pipelines.train_dataset(_config(root, augment=True, read_threads=2), store=store)
  for ref, batch in zip(reference, threaded):
    np.testing.assert_array_equal(ref, batch["driving"])
  it = iter(pipelines.train_dataset(_config(root, augment=True, worker_count=1), store=store))
  try:
    for ref in reference:
      np.testing.assert_array_equal(ref, next(it)["driving"])
  finally:
    it.close()


def test_config_dict_is_accepted(root):
  cfg = ml_collections.ConfigDict(dict(
      root=str(root), format="folders", image_size=SIZE, num_repeats=1,
      augment=dict(horizontal_flip=True, time_flip=False, brightness=0.0,
                   contrast=0.0, saturation=0.0, hue=0.0),
      batch_size=2, seed=0, worker_count=0))
  batch = next(iter(pipelines.train_dataset(cfg, process_index=0, process_count=1)))
  assert batch["source"].shape == (2, SIZE, SIZE, 3)


# -- Evaluation -----------------------------------------------------------------


def test_reconstruction_protocol_source_is_first_frame(root, store):
  cfg = _config(root)
  seen = {}
  for chunk in pipelines.reconstruction_dataset(cfg, store=store, pad=True):
    assert chunk["driving"].shape == (4, SIZE, SIZE, 3)
    assert _decode(chunk["source"])[2] == 0
    for frame, index, valid in zip(chunk["driving"], chunk["frame_indices"], chunk["valid"]):
      assert _decode(frame)[2] == index
      if valid:
        seen.setdefault(chunk["video"], []).append(int(index))
  assert len(seen) == NUM_IDS * VIDS_PER_ID
  assert all(v == list(range(FRAMES)) for v in seen.values())
  halves = [{c["video"] for c in pipelines.reconstruction_dataset(
      cfg, store=store, process_index=p, process_count=2)} for p in range(2)]
  assert not halves[0] & halves[1] and halves[0] | halves[1] == set(seen)


def test_pair_list_csv(root, store, tmp_path):
  with_header = tmp_path / "pairs.csv"
  with_header.write_text("driving_frame,driving_video,source_video,source_frame\n"
                         "5,id1#v1,id0#v0,2\n0,id3#v0.mp4,id2#v1,4\n")
  no_header = tmp_path / "plain.csv"
  no_header.write_text("id0#v0,2,id1#v1,5\n\nid2#v1,4,id3#v0.mp4,0\n")
  expected = [pipelines.PairSpec("id0#v0", 2, "id1#v1", 5),
              pipelines.PairSpec("id2#v1", 4, "id3#v0.mp4", 0)]
  assert pipelines.read_pair_csv(with_header) == expected
  assert pipelines.read_pair_csv(no_header) == expected
  batch = next(iter(pipelines.pair_list_dataset(_config(root), no_header, store=store)))
  assert list(batch["driving_video"]) == ["id1#v1", "id3#v0"]
  assert [_decode(f) for f in batch["source"]] == [(0, 0, 2), (2, 1, 4)]
  assert [_decode(f) for f in batch["driving"]] == [(1, 1, 5), (3, 0, 0)]


def test_whole_video_iteration(root, store):
  videos = list(pipelines.video_dataset(_config(root), store=store))
  assert len(videos) == NUM_IDS * VIDS_PER_ID
  assert videos[0]["frames"].shape == (FRAMES, SIZE, SIZE, 3)
  assert videos[0]["frames"].dtype == np.uint8


def test_global_batch_on_eight_devices():
  """Pipeline batches go onto the devices with talkingmem.sharding.global_batch."""
  assert len(jax.devices()) == 8
  mesh = jax.make_mesh((8,), (sharding.DATA_AXIS,))
  local = {"source": np.arange(8 * 2 * 2 * 3, dtype=np.float32).reshape(8, 2, 2, 3),
           "video": np.array(["a"] * 8)}
  batch = sharding.global_batch(local, mesh)
  assert isinstance(batch["source"], jax.Array)
  assert batch["source"].shape == (8, 2, 2, 3)
  assert len(batch["source"].addressable_shards) == 8
  np.testing.assert_array_equal(np.asarray(batch["source"]), local["source"])
  assert "video" not in batch  # Names cannot live on devices.


# -- Same interface over a built TFDS dataset ------------------------------------


def test_tfds_format_gives_the_same_pairs(root, store, tmp_path):
  from data_pipelines.fomm import tfds_builders  # pylint: disable=g-import-not-at-top
  tfds_builders.build("voxceleb", root, tmp_path)
  folders = list(zip(range(2), pipelines.train_dataset(_config(root, augment=True),
                                                       store=store)))
  tfds_cfg = _config(tmp_path, format="tfds", dataset="voxceleb", augment=True)
  for (_, expected), got in zip(folders, pipelines.train_dataset(tfds_cfg)):
    np.testing.assert_array_equal(expected["source"], got["source"])
    np.testing.assert_array_equal(expected["driving"], got["driving"])


def test_global_batches_do_not_depend_on_process_count():
  """Process p's local batch fills rows [p*L, (p+1)*L) of every global batch, as one process would."""
  global_batch, batches = 8, 3
  one = grain_utils.train_slot_dataset(10, seed=3, process_index=0, process_count=1, num_epochs=4,
                           local_batch=global_batch)
  expected = [one[i] for i in range(global_batch * batches)]
  for count in (2, 4):
    local = global_batch // count
    shards = [grain_utils.train_slot_dataset(10, seed=3, process_index=p, process_count=count,
                                             num_epochs=4, local_batch=local)
              for p in range(count)]
    got = [shards[p][b * local + o] for b in range(batches) for p in range(count) for o in range(local)]
    assert got == expected
