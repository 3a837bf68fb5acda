"""VGG19 feature extractor: torchvision conversion, refusal, NumPy reference conv, file round trips."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkingmem.nn import vgg
from talkingmem.tools import convert_vgg19


def _torchvision_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
  """Random weights in vgg19-dcbb9e9d.pth layout, with the unused convs and classifier keys."""
  rng = np.random.default_rng(seed)
  sd = {"classifier.0.weight": np.zeros((4, 8), np.float32),
        "classifier.0.bias": np.zeros(4, np.float32)}
  for idx, cin, cout in vgg.CONVS + ((30, 512, 512), (32, 512, 512), (34, 512, 512)):
    std = np.sqrt(2.0 / (cin * 9))
    sd[f"features.{idx}.weight"] = (rng.standard_normal((cout, cin, 3, 3)) * std).astype(np.float32)
    sd[f"features.{idx}.bias"] = (rng.standard_normal(cout) * 0.1).astype(np.float32)
  return sd


@pytest.fixture(scope="module")
def state_dict() -> dict[str, np.ndarray]:
  return _torchvision_state_dict()


def test_convert_maps_layout(state_dict):
  params = vgg.convert_vgg19(state_dict)
  assert sorted(params) == sorted(vgg.param_name(i) for i, _, _ in vgg.CONVS)
  np.testing.assert_array_equal(params["features_5"]["kernel"],
                                state_dict["features.5.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params["features_28"]["bias"], state_dict["features.28.bias"])
  init = jax.eval_shape(vgg.VGG19().init, jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))
  assert jax.tree_util.tree_map(np.shape, init["params"]) == jax.tree_util.tree_map(np.shape, params)


def test_convert_refuses_missing_key_and_bad_shape(state_dict):
  missing = dict(state_dict)
  del missing["features.19.bias"]
  with pytest.raises(ValueError, match=r"missing features\.19\.bias"):
    vgg.convert_vgg19(missing)
  bad = dict(state_dict, **{"features.2.weight": np.zeros((64, 32, 3, 3), np.float32)})
  with pytest.raises(ValueError, match=r"features\.2\.weight.*\(64, 32, 3, 3\)"):
    vgg.convert_vgg19(bad)


def _conv_nchw(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Reference 3x3, padding 1 cross-correlation in torch's layout (NCHW, OIHW)."""
  n, c, h, wd = x.shape
  xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
  out = np.zeros((n, w.shape[0], h, wd), np.float64)
  for dy in range(3):
    for dx in range(3):
      out += np.einsum("nchw,oc->nohw", xp[:, :, dy:dy + h, dx:dx + wd], w[:, :, dy, dx])
  return out + b[None, :, None, None]


def test_first_conv_matches_numpy_reference(state_dict):
  params = vgg.convert_vgg19(state_dict)
  rng = np.random.default_rng(1)
  image = rng.random((2, 32, 24, 3), np.float32)  # Non-square, to catch an H/W swap.
  feats = vgg.VGG19().apply({"params": params}, jnp.asarray(image))
  normed = ((image - vgg.IMAGENET_MEAN) / vgg.IMAGENET_STD).transpose(0, 3, 1, 2)
  ref = np.maximum(_conv_nchw(normed, state_dict["features.0.weight"],
                              state_dict["features.0.bias"]), 0).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(np.asarray(feats[0]), ref, rtol=1e-4, atol=1e-4)
  assert [f.shape for f in feats] == [(2, 32, 24, 64), (2, 16, 12, 128), (2, 8, 6, 256),
                                      (2, 4, 3, 512), (2, 2, 1, 512)]


def test_load_pth_like_and_npz_round_trips(state_dict, tmp_path):
  want = vgg.convert_vgg19(state_dict)
  torchvision_npz = tmp_path / "tv.npz"
  np.savez(torchvision_npz, **state_dict)
  ours = tmp_path / "ours.npz"
  count = convert_vgg19.convert(torchvision_npz, ours)
  assert count == sum(p.size for leaves in want.values() for p in leaves.values())
  for path in (torchvision_npz, ours):
    got = vgg.load_vgg19_params(path)
    jax.tree_util.tree_map(np.testing.assert_array_equal, got, want)


def test_load_errors(tmp_path, state_dict):
  with pytest.raises(FileNotFoundError, match="vgg19-dcbb9e9d.pth"):
    vgg.load_vgg19_params(tmp_path / "absent.pth")
  flat = vgg.flatten_params(vgg.convert_vgg19(state_dict))
  del flat["features_0.kernel"]
  flat["features_2.bias"] = np.zeros(3, np.float32)
  np.savez(tmp_path / "broken.npz", **flat)
  with pytest.raises(ValueError, match=r"missing features_0\.kernel.*features_2\.bias: shape"):
    vgg.load_vgg19_params(tmp_path / "broken.npz")


def test_load_pth_goes_through_torch_io(state_dict, tmp_path, monkeypatch):
  path = tmp_path / "vgg19-dcbb9e9d.pth"
  path.write_bytes(b"")
  seen = []
  monkeypatch.setattr(vgg.torch_io, "load_torch_file", lambda p: seen.append(p) or dict(state_dict))
  got = vgg.load_vgg19_params(path)
  assert seen == [path]
  np.testing.assert_array_equal(got["features_0"]["kernel"],
                                state_dict["features.0.weight"].transpose(2, 3, 1, 0))
