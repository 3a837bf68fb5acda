"""Torch-free checkpoint reader on files written in torch's formats."""
import collections
import contextlib
import importlib.util
import pathlib
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from talkingmem import torch_io


# --- A minimal torch.save imitation: same pickle globals and persistent ids. --

_STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


class _FakeStorage:
  """A flat storage: 1-D `data`; `type_name` is torch's storage class."""

  def __init__(self, data: np.ndarray, type_name: str | None = None):
    self.data = np.ascontiguousarray(data).reshape(-1)
    self.type_name = type_name or _STORAGE_NAMES[self.data.dtype]

  def raw(self) -> bytes:
    if self.type_name == "BFloat16Storage":  # float32 -> top 16 bits.
      return (self.data.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
    return self.data.astype(self.data.dtype.newbyteorder("<")).tobytes()


class _FakeTensor:
  """Pickles exactly as a torch tensor: `_rebuild_tensor_v2(storage, ...)`."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset = storage, offset
    self.size, self.stride = tuple(size), tuple(stride)

  @classmethod
  def of(cls, array: np.ndarray, type_name: str | None = None):
    array = np.array(array, order="C")  # Keeps 0-d, unlike ascontiguousarray.
    strides = tuple(s // max(array.itemsize, 1) for s in array.strides)
    return cls(_FakeStorage(array, type_name), 0, array.shape, strides)

  def __reduce_ex__(self, protocol):
    fake_utils = sys.modules["torch._utils"]
    return (fake_utils._rebuild_tensor_v2,
            (self.storage, self.offset, self.size, self.stride, False,
             collections.OrderedDict()))


@contextlib.contextmanager
def _fake_torch_modules():
  """Temporarily registers fake `torch`, `torch._utils` for pickle globals."""
  torch_mod = types.ModuleType("torch")
  utils_mod = types.ModuleType("torch._utils")

  def _rebuild_tensor_v2(*args):
    raise AssertionError("never called")

  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
  for name in set(_STORAGE_NAMES.values()) | {"BFloat16Storage"}:
    setattr(torch_mod, name,
            type(name, (), {"__module__": "torch", "__qualname__": name}))
  torch_mod._utils = utils_mod
  saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
  sys.modules.update({"torch": torch_mod, "torch._utils": utils_mod})
  try:
    yield torch_mod
  finally:
    for k, v in saved.items():
      if v is None:
        sys.modules.pop(k, None)
      else:
        sys.modules[k] = v


def _pickle_with_storages(obj, f, torch_mod, legacy: bool) -> list:
  """Pickles `obj` with torch's persistent ids; returns storages by key."""
  storages: dict[int, tuple[str, _FakeStorage]] = {}

  class _Pickler(pickle.Pickler):

    def persistent_id(self, o):
      if not isinstance(o, _FakeStorage):
        return None
      key = storages.setdefault(id(o), (str(len(storages)), o))[0]
      storage_type = getattr(torch_mod, o.type_name)
      if legacy:
        return ("storage", storage_type, key, "cpu", o.data.size, None)
      return ("storage", storage_type, key, "cpu", o.data.size)

  _Pickler(f, protocol=2).dump(obj)
  return [s for _, s in storages.values()]


def _save_zip(obj, path: pathlib.Path) -> None:
  """Writes `obj` like `torch.save` (zip format, torch >= 1.6)."""
  import io  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  with _fake_torch_modules() as torch_mod:
    storages = _pickle_with_storages(obj, buf, torch_mod, legacy=False)
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
    zf.writestr("archive/data.pkl", buf.getvalue())
    zf.writestr("archive/byteorder", "little")
    for key, storage in enumerate(storages):
      zf.writestr(f"archive/data/{key}", storage.raw())
    zf.writestr("archive/version", "3\n")
    zf.writestr("archive/.data/serialization_id", "0123456789")


def _save_legacy(obj, path: pathlib.Path) -> None:
  """Writes `obj` like torch.save(_use_new_zipfile_serialization=False)."""
  with open(path, "wb") as f, _fake_torch_modules() as torch_mod:
    pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
    pickle.dump(1001, f, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, f,
                protocol=2)
    storages = _pickle_with_storages(obj, f, torch_mod, legacy=True)
    pickle.dump([str(i) for i in range(len(storages))], f, protocol=2)
    for storage in storages:
      f.write(struct.pack("<q", storage.data.size))
      f.write(storage.raw())


# --- Tests. -------------------------------------------------------------------


def _sample_checkpoint(rng):
  """A checkpoint with shared/strided storages and several dtypes."""
  base = rng.standard_normal((3, 4)).astype(np.float32)
  shared = _FakeStorage(base)
  transposed = _FakeTensor(shared, 0, (4, 3), (1, 4))  # base.T, non-contiguous.
  row = _FakeTensor(shared, 4, (4,), (1,))  # base[1], with an offset.
  bf16_vals = np.array([1.0, -2.5, 0.15625, 2.0**100], np.float32)  # Exact.
  ckpt = {
      "generator": collections.OrderedDict([
          ("module.conv.weight", _FakeTensor.of(
              rng.standard_normal((8, 3, 3, 3)).astype(np.float32))),
          ("module.conv.bias", _FakeTensor.of(np.arange(8, dtype=np.float32))),
          ("module.block", {"w_t": transposed, "row": row}),
          ("module.half", _FakeTensor.of(
              np.array([0.5, -1.25, 65504.0], np.float16))),
          ("module.steps", _FakeTensor.of(np.array(2**40 + 3, np.int64))),
          ("module.bf16", _FakeTensor.of(bf16_vals, "BFloat16Storage")),
          ("module.mask", _FakeTensor.of(np.array([True, False]))),
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


@pytest.mark.parametrize("save", [_save_zip, _save_legacy])
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
  _save_zip(ckpt, tmp_path / "c.pth")
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
  storage = _FakeStorage(np.zeros(6, np.float32))
  _save_zip({"w": _FakeTensor(storage, 2, (3, 2), (2, 1))}, tmp_path / "b.pth")
  with pytest.raises(torch_io.TorchFileError, match="exceeds its storage"):
    torch_io.load_torch_file(tmp_path / "b.pth")
