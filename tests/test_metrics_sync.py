"""SyncNet port: converter keys/shapes, the audio stream against a NumPy torch-layout reference, MFCC
against python_speech_features, and Sync-C/Sync-D against a NumPy transcription of syncnet_python."""
import collections

import jax
import numpy as np
import pytest

from talkingmem.metrics import sync, syncnet_weights
from talkingmem.tools import convert_syncnet

import torch_files  # tests/ is on sys.path under pytest: a torch.save imitation.

# SyncNetModel.S as torch declares it: (sequential, index, kind, args).
TORCH_LAYERS = [
    ("netcnnaud", 0, "conv", (1, 64, (3, 3))), ("netcnnaud", 1, "bn", 64),
    ("netcnnaud", 4, "conv", (64, 192, (3, 3))), ("netcnnaud", 5, "bn", 192),
    ("netcnnaud", 8, "conv", (192, 384, (3, 3))), ("netcnnaud", 9, "bn", 384),
    ("netcnnaud", 11, "conv", (384, 256, (3, 3))), ("netcnnaud", 12, "bn", 256),
    ("netcnnaud", 14, "conv", (256, 256, (3, 3))), ("netcnnaud", 15, "bn", 256),
    ("netcnnaud", 18, "conv", (256, 512, (5, 4))), ("netcnnaud", 19, "bn", 512),
    ("netfcaud", 0, "linear", (512, 512)), ("netfcaud", 1, "bn", 512),
    ("netfcaud", 3, "linear", (512, 1024)),
    ("netfclip", 0, "linear", (512, 512)), ("netfclip", 1, "bn", 512),
    ("netfclip", 3, "linear", (512, 1024)),
    ("netcnnlip", 0, "conv", (3, 96, (5, 7, 7))), ("netcnnlip", 1, "bn", 96),
    ("netcnnlip", 4, "conv", (96, 256, (1, 5, 5))), ("netcnnlip", 5, "bn", 256),
    ("netcnnlip", 8, "conv", (256, 256, (1, 3, 3))), ("netcnnlip", 9, "bn", 256),
    ("netcnnlip", 11, "conv", (256, 256, (1, 3, 3))), ("netcnnlip", 12, "bn", 256),
    ("netcnnlip", 14, "conv", (256, 256, (1, 3, 3))), ("netcnnlip", 15, "bn", 256),
    ("netcnnlip", 18, "conv", (256, 512, (1, 6, 6))), ("netcnnlip", 19, "bn", 512),
]


def _torch_state_dict(rng) -> collections.OrderedDict:
  sd = collections.OrderedDict()
  for seq, i, kind, args in TORCH_LAYERS:
    p = f"__S__.{seq}.{i}."
    if kind == "bn":
      sd[p + "weight"] = rng.uniform(0.5, 1.5, args).astype(np.float32)
      sd[p + "bias"] = rng.normal(0, 0.1, args).astype(np.float32)
      sd[p + "running_mean"] = rng.normal(0, 0.1, args).astype(np.float32)
      sd[p + "running_var"] = rng.uniform(0.5, 2.0, args).astype(np.float32)
      sd[p + "num_batches_tracked"] = np.array(7, np.int64)
    else:
      cin, cout = args[:2]
      shape = (cout, cin, *args[2]) if kind == "conv" else (cout, cin)
      fan_in = np.prod(shape[1:])
      sd[p + "weight"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
      sd[p + "bias"] = rng.normal(0, 0.05, cout).astype(np.float32)
  return sd


# A NumPy forward of the audio stream in torch's layout (NCHW, OIHW weights, (out, in) linears).
def _conv2d(x, w, b, pad):
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=(2, 3))  # N C H W kh kw
  return np.einsum("nchwij,ocij->nohw", windows, w) + b[None, :, None, None]


def _bn(x, sd, p, axis=1):
  shape = [1] * x.ndim
  shape[axis] = -1
  r = lambda k: sd[p + k].reshape(shape)  # noqa: E731
  return (x - r("running_mean")) / np.sqrt(r("running_var") + 1e-5) * r("weight") + r("bias")


def _maxpool(x, window, stride):
  windows = np.lib.stride_tricks.sliding_window_view(x, window, axis=(2, 3))
  return windows[:, :, ::stride[0], ::stride[1]].max((-1, -2))


def _audio_reference(sd, x):  # x (N, 1, 13, 20)
  g = lambda i, k: sd[f"__S__.netcnnaud.{i}.{k}"].astype(np.float64)  # noqa: E731
  for i, pad, pool in ((0, 1, ((1, 1), (1, 1))), (4, 1, ((3, 3), (1, 2))), (8, 1, None), (11, 1, None),
                       (14, 1, ((3, 3), (2, 2))), (18, 0, None)):
    x = np.maximum(_bn(_conv2d(x, g(i, "weight"), g(i, "bias"), pad), sd, f"__S__.netcnnaud.{i + 1}."), 0)
    if pool:
      x = _maxpool(x, *pool)
  x = x.reshape(len(x), -1)
  f = lambda i, k: sd[f"__S__.netfcaud.{i}.{k}"].astype(np.float64)  # noqa: E731
  x = np.maximum(_bn(x @ f(0, "weight").T + f(0, "bias"), sd, "__S__.netfcaud.1."), 0)
  return x @ f(3, "weight").T + f(3, "bias")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  sd = _torch_state_dict(np.random.default_rng(0))
  path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
  torch_files.save_legacy({k: torch_files.FakeTensor.of(v) for k, v in sd.items()}, path)
  out = path.with_suffix(".npz")
  count = convert_syncnet.convert(path, out)
  return sd, out, count


def test_converter_keys_and_shapes(converted):
  sd, out, count = converted
  with np.load(out) as data:
    keys = set(data.files)
    assert data["params/netcnnlip_0/kernel"].shape == (5, 7, 7, 3, 96)  # OIDHW -> DHWIO
    np.testing.assert_array_equal(data["params/netcnnlip_0/kernel"][2, 3, 4, 1, 5],
                                  sd["__S__.netcnnlip.0.weight"][5, 1, 2, 3, 4])
    assert data["params/netfclip_3/kernel"].shape == (512, 1024)
    np.testing.assert_array_equal(data["batch_stats/netcnnaud_19/var"], sd["__S__.netcnnaud.19.running_var"])
  expected = {"/".join(k) for k in jax.tree_util.tree_flatten_with_path(sync.variable_shapes())[0]
              for k in [[getattr(p, "key", str(p)) for p in k[0]]]}
  assert keys == expected
  trainable = sum(v.size for k, v in sd.items() if "running" not in k and "num_batches" not in k)
  assert count == trainable


def test_audio_stream_matches_torch_layout_reference(converted):
  sd, out, _ = converted
  variables = sync.load_variables(out)
  x = np.random.default_rng(1).standard_normal((2, 13, 20)).astype(np.float32)
  got = sync.SyncNet().apply(variables, x, method=sync.SyncNet.audio)
  want = _audio_reference(sd, x[:, None].astype(np.float64))
  np.testing.assert_allclose(np.asarray(got), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


def test_lip_stream_shapes():
  out = jax.eval_shape(lambda v, x: sync.SyncNet().apply(v, x, method=sync.SyncNet.lip),
                       sync.variable_shapes(), jax.ShapeDtypeStruct((3, 5, 224, 224, 3), np.float32))
  assert out.shape == (3, 1024)


def test_rejects_foreign_state_dict(tmp_path):
  with pytest.raises(syncnet_weights.ConversionError, match="unexpected key"):
    syncnet_weights.flat_variables({"features.0.weight": np.zeros((3, 3, 3, 3))})
  bad = tmp_path / "bad.npz"
  np.savez(bad, **{"params/netfcaud_0/kernel": np.zeros((2, 2))})
  with pytest.raises(sync.SyncNetWeightsError, match="does not fit"):
    sync.load_variables(bad)


def test_mfcc_matches_python_speech_features():
  psf = pytest.importorskip("python_speech_features")
  wave = np.random.default_rng(0).standard_normal(8000) * 3000.0
  wave[1000:1600] = 0.0
  np.testing.assert_allclose(sync.mfcc(wave), psf.mfcc(wave, 16000), rtol=1e-9, atol=1e-9)


def _reference_scores(video, audio, vshift):
  """syncnet_python's calc_pdist + evaluate, transcribed with plain loops."""
  win = 2 * vshift + 1
  padded = np.concatenate([np.zeros((vshift, audio.shape[1])), audio, np.zeros((vshift, audio.shape[1]))])
  dists = []
  for i in range(len(video)):
    dists.append([np.sqrt(np.sum((video[i] - padded[i + k] + 1e-6) ** 2)) for k in range(win)])
  mdist = np.mean(np.array(dists), 0)
  minidx = int(np.argmin(mdist))
  return {"sync_d": mdist[minidx], "sync_c": np.sort(mdist)[vshift] - mdist[minidx],
          "offset": vshift - minidx}


@pytest.mark.parametrize("vshift", [3, 15])
def test_sync_scores_match_reference(vshift):
  rng = np.random.default_rng(vshift)
  audio = rng.standard_normal((40, 16))
  video = np.roll(audio, 2, axis=0) + 0.1 * rng.standard_normal((40, 16))  # video lags audio by 2
  got = sync.scores_from_distances(sync.offset_distances(video, audio, vshift), vshift)
  want = _reference_scores(video, audio, vshift)
  assert got["offset"] == want["offset"] == vshift - (vshift - 2)
  np.testing.assert_allclose(got["sync_d"], want["sync_d"], rtol=1e-12)
  np.testing.assert_allclose(got["sync_c"], want["sync_c"], rtol=1e-12)
  assert got["sync_c"] > 1.0


def test_sync_metrics_unavailable_without_weights(tmp_path):
  out = sync.sync_metrics(np.zeros((10, 8, 8, 3)), np.zeros(6400), None)
  assert out["sync_c"] is None and "no SyncNet weights" in out["unavailable"]
  out = sync.sync_metrics(np.zeros((10, 8, 8, 3)), np.zeros(6400), tmp_path / "missing.model")
  assert out["sync_d"] is None and "not found" in out["unavailable"]
