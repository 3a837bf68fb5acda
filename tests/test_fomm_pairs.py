"""Training-pair sampling: the disocclusion-stressing sampler against a brute-force choice."""
import pathlib
import pickle

import numpy as np
import pytest

from data_pipelines import video_io
from data_pipelines.fomm import layout as fomm_layout
from data_pipelines.fomm import pairs
from data_pipelines.fomm import pipelines
from data_pipelines.user_errors import UserInputError

FRAMES, SIZE = 12, 16


def _frame(t: int) -> np.ndarray:
  return np.full((SIZE, SIZE, 3), 20 * t + 5, np.uint8)  # R, G, B all code the frame index.


def _time(frame: np.ndarray) -> int:
  return int(round((frame[0, 0, 0] * 255 - 5) / 20))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
  """Two identities; id0's video has metadata whose yaw grows with time and whose occluder covers
  the last 3 frames; id1's video has none."""
  root = tmp_path_factory.mktemp("pairs")
  for identity in ("id0", "id1"):
    video_io.write_video(root / "train" / f"{identity}#v0", np.stack([_frame(t) for t in range(FRAMES)]))
  store = fomm_layout.FommVideoIndex(root, image_size=SIZE)
  video = store.find("id0#v0", "train")
  pose = np.zeros((FRAMES, 6), np.float32)
  pose[:, 0] = 0.05 * np.arange(FRAMES)
  occlusion = np.where(np.arange(FRAMES) >= FRAMES - 3, 0.4, 0.0).astype(np.float32)
  np.savez(pathlib.Path(video.path).parent / "id0#v0.npz", pose=pose, occlusion=occlusion)
  return store


def _gaps(source: pairs.TrainPairSource, slot: int, n: int = 60) -> list[int]:
  out = []
  for key in range(n):
    ex = source.example(slot, key)
    out.append(abs(_time(ex["driving"]) - _time(ex["source"])))
  return out


def test_pair_scores_are_yaw_plus_occlusion_differences():
  pose = np.zeros((3, 6))
  pose[:, 0] = [0.0, 0.3, -0.2]
  occ = np.array([0.0, 0.5, 0.0])
  np.testing.assert_allclose(pairs.pair_scores(pose, occ, np.array([[0, 1], [1, 2], [0, 0]])),
                             [0.8, 1.0, 0.0])


def test_disocclusion_sampling_picks_the_best_scoring_candidate(store):
  uniform = pairs.TrainPairSource(store, augment=False, seed=1)
  stressed = pairs.TrainPairSource(store, augment=False, seed=1,
                                   sampling=pairs.PairSampling("disocclusion", candidates=8, fraction=1.0))
  # id0 (slot 0) has metadata: yaw grows with time, so the best of 8 pairs is far apart in time.
  assert np.mean(_gaps(stressed, 0)) > 1.8 * np.mean(_gaps(uniform, 0))
  # Brute force: redraw the candidates with the example's generator and score them by hand.
  motion = np.load(pathlib.Path(store.find("id0#v0", "train").path).parent / "id0#v0.npz")
  for key in range(10):
    rng = stressed.rng(key)
    rng.integers(1)  # the video choice (one video)
    drawn = np.sort(rng.choice(FRAMES, size=2, replace=True))
    rng.random()
    candidates = np.concatenate([drawn[None], rng.integers(FRAMES, size=(7, 2))])
    best = np.sort(candidates[np.argmax(pairs.pair_scores(motion["pose"], motion["occlusion"], candidates))])
    ex = stressed.example(0, key)
    assert (_time(ex["source"]), _time(ex["driving"])) == tuple(best)


def test_videos_without_metadata_are_drawn_uniformly(store):
  stressed = pairs.TrainPairSource(store, augment=False, seed=1,
                                   sampling=pairs.PairSampling("disocclusion", fraction=1.0))
  uniform = pairs.TrainPairSource(store, augment=False, seed=1)
  # id1 (slot 1) has no metadata: gaps look like uniform draws (mean |t1 - t2| of two uniform frames
  # out of 12 is ~4), not like the stressed id0 ones.
  assert abs(np.mean(_gaps(stressed, 1, 200)) - np.mean(_gaps(uniform, 1, 200))) < 0.8


def test_fraction_zero_is_uniform_and_the_source_pickles(store):
  none = pairs.TrainPairSource(store, augment=False, seed=2,
                               sampling=pairs.PairSampling("disocclusion", fraction=0.0))
  copy = pickle.loads(pickle.dumps(none))
  for key in range(5):
    a, b = none.example(0, key), copy.example(0, key)
    np.testing.assert_array_equal(a["driving"], b["driving"])


def test_bad_sampling_settings_name_the_setting():
  with pytest.raises(UserInputError, match="pair_sampling"):
    pairs.PairSampling("hard")
  with pytest.raises(UserInputError, match="disocclusion_fraction"):
    pairs.PairSampling("disocclusion", fraction=1.5)


def test_pipeline_config_selects_the_sampler(store):
  def mean_gap(**sampling) -> float:
    cfg = pipelines.DataConfig(root="unused", image_size=SIZE, batch_size=2, augment=False,
                               read_threads=0, seed=0, **sampling)
    batches = pipelines.train_dataset(cfg, store=store, process_index=0, process_count=1)
    gaps = [abs(_time(d) - _time(s)) for _, b in zip(range(30), batches)
            for s, d in zip(b["source"], b["driving"])]
    return float(np.mean(gaps))

  assert mean_gap(pair_sampling="disocclusion", disocclusion_fraction=1.0) > 1.3 * mean_gap()
