"""LPIPS in Flax: weight conversion, refusal, NumPy reference forward."""
import jax
import numpy as np
import pytest
import skimage.data
import skimage.transform

from talkingmem.metrics import lpips

from lpips_weights import torchvision_state_dict  # tests/ is on sys.path under pytest.


def _heads(net: str, seed: int = 0) -> dict[str, np.ndarray]:
  """Real lpips heads when the package is installed, else positive random."""
  path = lpips.default_heads_path(net)
  if path is not None:
    return lpips._read_weights(path)  # pylint: disable=protected-access
  rng = np.random.default_rng(seed)
  return {f"lin{i}.model.1.weight": rng.random((1, c, 1, 1), np.float32)
          for i, c in enumerate(lpips.TAP_CHANNELS[net])}


def _variables(net: str) -> dict:
  params = {"backbone": lpips.convert_backbone(torchvision_state_dict(net),
                                               net)}
  params.update(lpips.convert_linear_heads(_heads(net), net))
  return {"params": params}


@pytest.fixture(scope="module")
def face64() -> np.ndarray:
  img = skimage.data.astronaut()[:256, 96:352]  # The face region.
  return skimage.transform.resize(img, (64, 64), anti_aliasing=True)[None]


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_converter_matches_module_shapes(net):
  variables = _variables(net)
  init = jax.eval_shape(lpips.LPIPS(net).init, jax.random.key(0),
                        np.zeros((1, 32, 32, 3)), np.zeros((1, 32, 32, 3)))
  want = jax.tree_util.tree_map(lambda x: x.shape, init)
  got = jax.tree_util.tree_map(lambda x: x.shape, variables)
  assert got == want
  assert list(variables["params"]["backbone"]) == lpips.layer_names(net)


def test_converter_rejects_wrong_layout():
  sd = torchvision_state_dict("alex")
  del sd["features.8.bias"]
  with pytest.raises(ValueError, match="features.8.bias"):
    lpips.convert_backbone(sd, "alex")
  with pytest.raises(ValueError, match="features.0.weight"):
    lpips.convert_backbone(torchvision_state_dict("alex"), "vgg")
  bad_heads = {k: -v for k, v in _heads("alex").items()}
  with pytest.raises(ValueError, match="non-negative"):
    lpips.convert_linear_heads(bad_heads, "alex")


def test_refuses_without_backbone(tmp_path):
  with pytest.raises(lpips.LPIPSUnavailable,
                     match="alexnet-owt-7be5be79.pth.*lpips_backbone="):
    lpips.LPIPSMetric.from_files("alex")
  with pytest.raises(lpips.LPIPSUnavailable, match="vgg16-397923af.pth"):
    lpips.load_lpips_params("vgg", backbone_path=tmp_path / "nope.pth")


def _np_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int,
             pad: int) -> np.ndarray:
  """Reference torch Conv2d on NCHW with OIHW weights (cross-correlation)."""
  k = w.shape[-1]
  xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
  win = win[:, :, ::stride, ::stride]
  return np.einsum("nchwij,ocij->nohw", win, w, optimize=True) + b[:, None,
                                                                    None]


def _np_maxpool(x: np.ndarray, k: int, s: int) -> np.ndarray:
  win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
  return win[:, :, ::s, ::s].max(axis=(-1, -2))


def _np_lpips_alex(a: np.ndarray, b: np.ndarray, sd: dict,
                   heads: dict) -> np.ndarray:
  """NumPy port of lpips.LPIPS(net='alex').forward(..., normalize=True)."""
  shift = np.array([-.030, -.088, -.188])[None, :, None, None]
  scale = np.array([.458, .448, .450])[None, :, None, None]

  def feats(x):  # NHWC [0,1] -> list of NCHW relu taps.
    h = ((2 * x.transpose(0, 3, 1, 2).astype(np.float64) - 1) - shift) / scale
    out = []
    for idx, stride, pad, pool in [(0, 4, 2, True), (3, 1, 2, True),
                                   (6, 1, 1, False), (8, 1, 1, False),
                                   (10, 1, 1, False)]:
      h = np.maximum(_np_conv(h, sd[f"features.{idx}.weight"],
                              sd[f"features.{idx}.bias"], stride, pad), 0)
      out.append(h)
      if pool:
        h = _np_maxpool(h, 3, 2)
    return out

  total = 0.0
  for i, (fa, fb) in enumerate(zip(feats(a), feats(b))):
    na = fa / (np.sqrt((fa**2).sum(1, keepdims=True)) + 1e-10)
    nb = fb / (np.sqrt((fb**2).sum(1, keepdims=True)) + 1e-10)
    w = heads[f"lin{i}.model.1.weight"].reshape(1, -1, 1, 1)
    total = total + ((na - nb)**2 * w).sum(1).mean(axis=(1, 2))
  return total


def test_first_conv_matches_numpy_reference(face64):
  sd = torchvision_state_dict("alex")
  params = {"params": lpips.convert_backbone(sd, "alex")}
  x = np.random.default_rng(3).standard_normal((2, 37, 41, 3)).astype(
      np.float32)
  taps = lpips.LPIPSBackbone("alex").apply(params, x)
  want = np.maximum(_np_conv(x.transpose(0, 3, 1, 2).astype(np.float64),
                             sd["features.0.weight"], sd["features.0.bias"],
                             4, 2), 0).transpose(0, 2, 3, 1)
  # Output height: (37 + 4 - 11) // 4 + 1 = 8.
  assert taps[0].shape == want.shape == (2, 8, 9, 64)
  np.testing.assert_allclose(np.asarray(taps[0]), want, rtol=1e-4, atol=1e-4)


def test_alex_matches_numpy_lpips(face64, tmp_path):
  sd = torchvision_state_dict("alex")
  np.savez(tmp_path / "alex_backbone.npz", **sd)
  heads = _heads("alex")
  np.savez(tmp_path / "alex_heads.npz", **heads)
  metric = lpips.LPIPSMetric.from_files("alex", tmp_path / "alex_backbone.npz",
                                        tmp_path / "alex_heads.npz")
  rng = np.random.default_rng(4)
  noisy = np.clip(face64 + rng.normal(0, 0.1, face64.shape), 0, 1)
  a = np.concatenate([face64, face64]).astype(np.float32)
  b = np.concatenate([noisy, np.roll(face64, 4, axis=2)]).astype(np.float32)
  np.testing.assert_allclose(np.asarray(metric(a, b)),
                             _np_lpips_alex(a, b, sd, heads), rtol=1e-4,
                             atol=1e-6)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_zero_on_identity_and_grows_with_distortion(net, face64):
  metric = lpips.LPIPSMetric(net, _variables(net))
  rng = np.random.default_rng(5)
  noise = rng.normal(0, 1, face64.shape)
  a = np.repeat(face64, 4, axis=0).astype(np.float32)
  b = np.concatenate([np.clip(face64 + s * noise, 0, 1)
                      for s in (0.0, 0.03, 0.1, 0.3)]).astype(np.float32)
  d = np.asarray(metric(a, b))
  assert d[0] == pytest.approx(0.0, abs=1e-6)
  assert np.all(np.diff(d) > 0), d
