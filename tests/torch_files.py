"""A minimal torch.save imitation (same pickle globals and persistent ids) for tests of the
torch-free checkpoint reader and the converters that use it; no torch needed."""
import collections
import contextlib
import pathlib
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


class FakeStorage:
  """A flat storage: 1-D `data`; `type_name` is torch's storage class."""

  def __init__(self, data: np.ndarray, type_name: str | None = None):
    self.data = np.ascontiguousarray(data).reshape(-1)
    self.type_name = type_name or STORAGE_NAMES[self.data.dtype]

  def raw(self) -> bytes:
    if self.type_name == "BFloat16Storage":  # float32 -> top 16 bits.
      return (self.data.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
    return self.data.astype(self.data.dtype.newbyteorder("<")).tobytes()


class FakeTensor:
  """Pickles exactly as a torch tensor: `_rebuild_tensor_v2(storage, ...)`."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset = storage, offset
    self.size, self.stride = tuple(size), tuple(stride)

  @classmethod
  def of(cls, array: np.ndarray, type_name: str | None = None):
    array = np.array(array, order="C")  # Keeps 0-d, unlike ascontiguousarray.
    strides = tuple(s // max(array.itemsize, 1) for s in array.strides)
    return cls(FakeStorage(array, type_name), 0, array.shape, strides)

  def __reduce_ex__(self, protocol):
    fake_utils = sys.modules["torch._utils"]
    return (fake_utils._rebuild_tensor_v2,
            (self.storage, self.offset, self.size, self.stride, False,
             collections.OrderedDict()))


@contextlib.contextmanager
def fake_torch_modules():
  """Temporarily registers fake `torch`, `torch._utils` for pickle globals."""
  torch_mod = types.ModuleType("torch")
  utils_mod = types.ModuleType("torch._utils")

  def _rebuild_tensor_v2(*args):
    raise AssertionError("never called")

  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
  for name in set(STORAGE_NAMES.values()) | {"BFloat16Storage"}:
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


def pickle_with_storages(obj, f, torch_mod, legacy: bool) -> list:
  """Pickles `obj` with torch's persistent ids; returns storages by key."""
  storages: dict[int, tuple[str, FakeStorage]] = {}

  class _Pickler(pickle.Pickler):

    def persistent_id(self, o):
      if not isinstance(o, FakeStorage):
        return None
      key = storages.setdefault(id(o), (str(len(storages)), o))[0]
      storage_type = getattr(torch_mod, o.type_name)
      if legacy:
        return ("storage", storage_type, key, "cpu", o.data.size, None)
      return ("storage", storage_type, key, "cpu", o.data.size)

  _Pickler(f, protocol=2).dump(obj)
  return [s for _, s in storages.values()]


def save_zip(obj, path: pathlib.Path) -> None:
  """Writes `obj` like `torch.save` (zip format, torch >= 1.6)."""
  import io  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  with fake_torch_modules() as torch_mod:
    storages = pickle_with_storages(obj, buf, torch_mod, legacy=False)
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
    zf.writestr("archive/data.pkl", buf.getvalue())
    zf.writestr("archive/byteorder", "little")
    for key, storage in enumerate(storages):
      zf.writestr(f"archive/data/{key}", storage.raw())
    zf.writestr("archive/version", "3\n")
    zf.writestr("archive/.data/serialization_id", "0123456789")


def save_legacy(obj, path: pathlib.Path) -> None:
  """Writes `obj` like torch.save(_use_new_zipfile_serialization=False)."""
  with open(path, "wb") as f, fake_torch_modules() as torch_mod:
    pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
    pickle.dump(1001, f, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, f,
                protocol=2)
    storages = pickle_with_storages(obj, f, torch_mod, legacy=True)
    pickle.dump([str(i) for i in range(len(storages))], f, protocol=2)
    for storage in storages:
      f.write(struct.pack("<q", storage.data.size))
      f.write(storage.raw())
