"""Torch-free checkpoint reader on files written in torch's formats."""
import collections
import importlib.util
import pathlib
import struct
import zipfile

import numpy as np
import pytest

from talkingmem import torch_io

import torch_files  # tests/ is on sys.path under pytest.


# --- Tests. -------------------------------------------------------------------


def _sample_checkpoint(rng):
  """A checkpoint with shared/strided storages and several dtypes."""
  base = rng.standard_normal((3, 4)).astype(np.float32)
  shared = torch_files.FakeStorage(base)
  transposed = torch_files.FakeTensor(shared, 0, (4, 3), (1, 4))  # base.T, non-contiguous.
  row = torch_files.FakeTensor(shared, 4, (4,), (1,))  # base[1], with an offset.
  bf16_vals = np.array([1.0, -2.5, 0.15625, 2.0**100], np.float32)  # Exact.
  ckpt = {
      "generator": collections.OrderedDict([
          ("module.conv.weight", torch_files.FakeTensor.of(
              rng.standard_normal((8, 3, 3, 3)).astype(np.float32))),
          ("module.conv.bias", torch_files.FakeTensor.of(np.arange(8, dtype=np.float32))),
          ("module.block", {"w_t": transposed, "row": row}),
          ("module.half", torch_files.FakeTensor.of(
              np.array([0.5, -1.25, 65504.0], np.float16))),
          ("module.steps", torch_files.FakeTensor.of(np.array(2**40 + 3, np.int64))),
          ("module.bf16", torch_files.FakeTensor.of(bf16_vals, "BFloat16Storage")),
          ("module.mask", torch_files.FakeTensor.of(np.array([True, False]))),
      ]),
      "epoch": 7,
      "opt": {"lr": 1e-4, "betas": (0.5, 0.999)},
  }
  expected = {
      "conv.bias": np.arange(8, dtype=np.float32),
      "block.w_t": base.T,
      "block.row": base[1],
      "half": np.array([0.5, -1.25, 65504.0], np.float16),
      "steps": np.array(2**40 + 3, np.int64),
      "bf16": bf16_vals,
      "mask": np.array([True, False]),
  }
  return ckpt, expected


@pytest.mark.parametrize("save", [torch_files.save_zip, torch_files.save_legacy])
def test_roundtrip(tmp_path, save):
  ckpt, expected = _sample_checkpoint(np.random.default_rng(0))
  path = tmp_path / "ckpt.pth"
  save(ckpt, path)
  loaded = torch_io.load_torch_file(path)
  assert loaded["epoch"] == 7 and loaded["opt"]["betas"] == (0.5, 0.999)
  gen = loaded["generator"]
  assert isinstance(gen, collections.OrderedDict)
  np.testing.assert_array_equal(gen["module.conv.weight"],
                                ckpt["generator"]["module.conv.weight"]
                                .storage.data.reshape(8, 3, 3, 3))
  sd = torch_io.state_dict_from_checkpoint(loaded, key="generator")
  assert "conv.weight" in sd and not any(k.startswith("module.") for k in sd)
  for name, want in expected.items():
    got = sd[name]
    assert got.shape == want.shape, name
    want_dtype = np.float32 if name == "bf16" else want.dtype
    assert got.dtype == want_dtype, name
    np.testing.assert_array_equal(got, want, err_msg=name)
  assert sd["block.w_t"].flags.c_contiguous and sd["block.w_t"].flags.writeable


def test_state_dict_selection_errors(tmp_path):
  ckpt, _ = _sample_checkpoint(np.random.default_rng(1))
  torch_files.save_zip(ckpt, tmp_path / "c.pth")
  loaded = torch_io.load_torch_file(tmp_path / "c.pth")
  with pytest.raises(TypeError, match="not an array"):
    torch_io.state_dict_from_checkpoint(loaded)  # Top level holds "epoch".
  with pytest.raises(KeyError, match="discriminator"):
    torch_io.state_dict_from_checkpoint(loaded, key="discriminator")
  flat = torch_io.state_dict_from_checkpoint({"state_dict": {"a": np.ones(2)}})
  assert list(flat) == ["a"]


def _evil_pickle(marker: pathlib.Path) -> bytes:
  cmd = f"touch {marker}".encode()
  return (b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len(cmd)) + cmd +
          b"q\x01\x85q\x02Rq\x03.")


def test_refuses_malicious_zip(tmp_path):
  marker = tmp_path / "pwned"
  path = tmp_path / "evil.pth"
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", _evil_pickle(marker))
  with pytest.raises(torch_io.UnsafeCheckpointError, match="os.system"):
    torch_io.load_torch_file(path)
  assert not marker.exists()


def test_refuses_malicious_legacy_and_modules(tmp_path):
  marker = tmp_path / "pwned"
  path = tmp_path / "evil.pth"
  path.write_bytes(_evil_pickle(marker))
  with pytest.raises(torch_io.UnsafeCheckpointError, match="os.system"):
    torch_io.load_torch_file(path)
  assert not marker.exists()
  module_pkl = b"\x80\x02ctorch.nn.modules.conv\nConv2d\nq\x00)\x81q\x01."
  with zipfile.ZipFile(tmp_path / "m.pth", "w") as zf:
    zf.writestr("archive/data.pkl", module_pkl)
  with pytest.raises(torch_io.UnsafeCheckpointError, match="Conv2d"):
    torch_io.load_torch_file(tmp_path / "m.pth")


def test_rejects_non_torch_files(tmp_path):
  (tmp_path / "x.pth").write_bytes(b"hello world")
  with pytest.raises(torch_io.TorchFileError):
    torch_io.load_torch_file(tmp_path / "x.pth")


def _lpips_weights_dir() -> pathlib.Path | None:
  spec = importlib.util.find_spec("lpips")  # Locate only (import needs torch).
  if spec is None or spec.origin is None:
    return None
  return pathlib.Path(spec.origin).parent / "weights" / "v0.1"


def test_reads_real_lpips_weights():
  """Independent input: files written by real torch, shipped with `lpips`."""
  weights = _lpips_weights_dir()
  if weights is None:
    pytest.skip("lpips package not installed (pip install --no-deps lpips)")
  channels = {"alex": [64, 192, 384, 256, 256], "vgg": [64, 128, 256, 512, 512],
              "squeeze": [64, 128, 256, 384, 384, 512, 512]}
  for net, chans in channels.items():
    sd = torch_io.state_dict_from_checkpoint(
        torch_io.load_torch_file(weights / f"{net}.pth"))
    assert list(sd) == [f"lin{i}.model.1.weight" for i in range(len(chans))]
    for i, c in enumerate(chans):
      w = sd[f"lin{i}.model.1.weight"]
      assert w.shape == (1, c, 1, 1) and w.dtype == np.float32
      # Trained LPIPS heads: finite, non-negative, not all zero, modest scale.
      assert np.isfinite(w).all() and (w >= 0).all()
      assert 0 < w.max() < 10


def test_rejects_out_of_bounds_view(tmp_path):
  storage = torch_files.FakeStorage(np.zeros(6, np.float32))
  torch_files.save_zip({"w": torch_files.FakeTensor(storage, 2, (3, 2), (2, 1))}, tmp_path / "b.pth")
  with pytest.raises(torch_io.TorchFileError, match="exceeds its storage"):
    torch_io.load_torch_file(tmp_path / "b.pth")
