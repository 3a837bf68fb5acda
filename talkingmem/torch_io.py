"""Torch-free reader for PyTorch checkpoint files (`torch.save` output).

Supports the zip format (torch >= 1.6) and the legacy "magic number" stream
format (torch 0.4 - 1.5). Unpickling is restricted: only tensor rebuild
functions, storage types, torch dtypes and a few plain containers are allowed;
any other global (modules, `os.system`, ...) raises `UnsafeCheckpointError`.
Tensors become NumPy arrays (bfloat16 is widened to float32).
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import pickle
import struct
import tarfile
import zipfile
from typing import Any, BinaryIO, Callable, Mapping

import numpy as np

from data_pipelines.user_errors import UserInputError

try:
  from numpy._core import multiarray as _multiarray
except ImportError:  # NumPy < 2.
  from numpy.core import multiarray as _multiarray

__all__ = [
    "TorchFileError",
    "UnsafeCheckpointError",
    "load_torch_file",
    "state_dict_from_checkpoint",
]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_BF16 = "bfloat16"


class TorchFileError(UserInputError):
  """The file is not a readable PyTorch checkpoint."""


class UnsafeCheckpointError(pickle.UnpicklingError):
  """The pickle references a global outside the allow-list."""


# Storage class name -> NumPy dtype (or the bfloat16 marker).
_STORAGE_DTYPES: dict[str, Any] = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": _BF16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
    "UntypedStorage": np.uint8,
}

# torch dtype attribute name -> NumPy dtype (or the bfloat16 marker).
_TORCH_DTYPES: dict[str, Any] = {
    "float32": np.float32, "float": np.float32,
    "float64": np.float64, "double": np.float64,
    "float16": np.float16, "half": np.float16,
    "bfloat16": _BF16,
    "int64": np.int64, "long": np.int64,
    "int32": np.int32, "int": np.int32,
    "int16": np.int16, "short": np.int16,
    "int8": np.int8, "uint8": np.uint8, "bool": np.bool_,
    "complex64": np.complex64, "complex128": np.complex128,
}


@dataclasses.dataclass(frozen=True)
class _StorageType:
  name: str
  dtype: Any


@dataclasses.dataclass(frozen=True)
class _TorchDtype:
  name: str
  dtype: Any


@dataclasses.dataclass
class _Storage:
  """A flat storage: `data` is a 1-D array of `dtype` (None in a dry run)."""
  dtype: Any
  data: np.ndarray | None


class _TensorMarker:
  """Stand-in for `torch.Tensor` / `torch.nn.Parameter` classes."""


def _itemsize(dtype: Any) -> int:
  return 2 if dtype is _BF16 else np.dtype(dtype).itemsize


def _decode(raw: bytes, dtype: Any, little_endian: bool) -> np.ndarray:
  """Decodes raw storage bytes into a 1-D array (bfloat16 -> float32)."""
  order = "<" if little_endian else ">"
  if dtype is _BF16:
    bits = np.frombuffer(raw, dtype=order + "u2").astype(np.uint32) << 16
    return bits.view(np.float32)
  dt = np.dtype(dtype)
  if dt.itemsize > 1 and dt.kind != "b":
    dt = dt.newbyteorder(order)
  return np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="), copy=False)


def _rebuild_tensor(storage: _Storage, storage_offset: int, size: Any,
                    stride: Any, *unused: Any) -> np.ndarray | None:
  """`torch._utils._rebuild_tensor(_v2)`: a strided view, copied."""
  del unused  # requires_grad, backward_hooks, metadata.
  if not isinstance(storage, _Storage):
    raise TorchFileError(f"tensor rebuilt from a non-storage: {type(storage)}")
  if storage.data is None:  # Dry run (legacy format, first pass).
    return None
  size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
  if len(size) != len(stride):
    raise TorchFileError(f"size {size} and stride {stride} differ in rank")
  data = storage.data
  if any(s == 0 for s in size):
    return np.zeros(size, dtype=data.dtype)
  last = storage_offset + sum((n - 1) * st for n, st in zip(size, stride))
  if storage_offset < 0 or min(stride, default=0) < 0 or last >= data.size:
    raise TorchFileError(
        f"tensor (offset {storage_offset}, size {size}, stride {stride}) "
        f"exceeds its storage of {data.size} elements")
  strides = tuple(st * data.itemsize for st in stride)
  view = np.lib.stride_tricks.as_strided(
      data[storage_offset:], shape=size, strides=strides, writeable=False)
  return np.array(view, order="C", copy=True)


def _rebuild_tensor_v3(storage: _Storage, storage_offset: int, size: Any,
                       stride: Any, requires_grad: bool, backward_hooks: Any,
                       dtype: _TorchDtype, *unused: Any) -> np.ndarray | None:
  """`torch._utils._rebuild_tensor_v3`: untyped storage plus a dtype."""
  del requires_grad, backward_hooks, unused
  if not isinstance(dtype, _TorchDtype):
    raise TorchFileError(f"unexpected dtype argument {dtype!r}")
  if storage.data is not None and storage.dtype != dtype.dtype:
    raw = storage.data.tobytes()
    storage = _Storage(dtype.dtype, _decode(raw, dtype.dtype, True))
  return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, *unused: Any) -> Any:
  """`torch._utils._rebuild_parameter(_with_state)`: the parameter's data."""
  del unused
  return data


def _rebuild_from_type_v2(func: Callable[..., Any], new_type: Any, args: Any,
                          state: Any) -> Any:
  """`torch._tensor._rebuild_from_type_v2` for plain Tensor / Parameter only."""
  del state
  if new_type is not _TensorMarker:
    raise UnsafeCheckpointError(f"tensor subclass {new_type!r} not supported")
  return func(*args)


def _torch_size(*args: Any) -> tuple[int, ...]:
  return tuple(*args) if args else ()


def _torch_device(*args: Any) -> str:
  return ":".join(str(a) for a in args)


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
  return text.encode(encoding)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("argparse", "Namespace"): argparse.Namespace,
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TensorMarker,
    ("torch.nn.parameter", "Parameter"): _TensorMarker,
    ("torch", "Size"): _torch_size,
    ("torch", "device"): _torch_device,
}
for _np_core in ("numpy.core.multiarray", "numpy._core.multiarray"):
  _ALLOWED[(_np_core, "scalar")] = _multiarray.scalar
  # pylint: disable-next=protected-access
  _ALLOWED[(_np_core, "_reconstruct")] = _multiarray._reconstruct
_ALLOWED[("numpy", "dtype")] = np.dtype
_ALLOWED[("numpy", "ndarray")] = np.ndarray


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickler with an allow-list of globals and torch storage support."""

  def __init__(self, file: BinaryIO,
               load_storage: Callable[[tuple[Any, ...]], _Storage]):
    super().__init__(file)
    self._load_storage = load_storage

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name, _STORAGE_DTYPES[name])
    if module == "torch" and name in _TORCH_DTYPES:
      return _TorchDtype(name, _TORCH_DTYPES[name])
    raise UnsafeCheckpointError(
        f"refusing to load global '{module}.{name}' from a checkpoint; only "
        "tensors, storages and plain containers are allowed (save a "
        "state_dict, not a pickled module)")

  def persistent_load(self, pid: Any) -> Any:
    if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
      kind = pid[0] if isinstance(pid, tuple) and pid else pid
      raise UnsafeCheckpointError(f"unsupported persistent id {kind!r}")
    return self._load_storage(pid[1:])


def _storage_dtype(storage_type: Any) -> Any:
  if not isinstance(storage_type, _StorageType):
    raise TorchFileError(f"unknown storage type {storage_type!r}")
  return storage_type.dtype


def _load_zip(path: str) -> Any:
  """Reads the zip format: `<archive>/data.pkl` + `<archive>/data/<key>`."""
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pkls = sorted((n for n in names if n.endswith("data.pkl")), key=len)
    if not pkls:
      raise TorchFileError(f"{path}: zip without data.pkl; not a torch file")
    prefix = pkls[0][:-len("data.pkl")]
    if any(n.startswith((prefix + "constants.pkl", prefix + "code/"))
           for n in names):
      raise TorchFileError(f"{path}: TorchScript archives are not supported")
    little = True
    if prefix + "byteorder" in names:
      order = zf.read(prefix + "byteorder").decode().strip()
      if order not in ("little", "big"):
        raise TorchFileError(f"{path}: unknown byteorder {order!r}")
      little = order == "little"
    cache: dict[str, _Storage] = {}

    def load_storage(args: tuple[Any, ...]) -> _Storage:
      storage_type, key, _, numel = args[:4]
      key = str(key)
      if key not in cache:
        dtype = _storage_dtype(storage_type)
        raw = zf.read(f"{prefix}data/{key}")
        if numel is not None and len(raw) < int(numel) * _itemsize(dtype):
          raise TorchFileError(f"{path}: storage {key} is truncated")
        usable = len(raw) - len(raw) % _itemsize(dtype)
        cache[key] = _Storage(dtype, _decode(raw[:usable], dtype, little))
      return cache[key]

    with zf.open(pkls[0]) as f:
      return _RestrictedUnpickler(f, load_storage).load()


def _load_legacy(path: str) -> Any:
  """Reads the legacy stream format (torch 0.4-1.5, or the zip flag off).

  Layout: pickles of magic number, protocol version, sys_info, the object
  (storages as persistent ids), the list of storage keys; then per key an
  int64 element count followed by the raw storage bytes.
  """
  with open(path, "rb") as f:
    safe = lambda: _RestrictedUnpickler(f, _no_storage).load()  # noqa: E731
    if safe() != _LEGACY_MAGIC:
      raise TorchFileError(f"{path}: bad magic number; not a torch file")
    safe()  # Protocol version.
    sys_info = safe()
    little = bool(sys_info.get("little_endian", True))
    obj_start = f.tell()
    # Pass 1: record storage types, skip tensor construction.
    specs: dict[str, tuple[Any, Any]] = {}

    def record(args: tuple[Any, ...]) -> _Storage:
      storage_type, key, _, numel = args[:4]
      dtype = _storage_dtype(storage_type)
      specs.setdefault(str(key), (dtype, numel))
      return _Storage(dtype, None)

    _RestrictedUnpickler(f, record).load()
    keys = [str(k) for k in safe()]
    bases: dict[str, _Storage] = {}
    for key in keys:
      if key not in specs:
        raise TorchFileError(f"{path}: storage {key} listed but unused")
      dtype = specs[key][0]
      (numel,) = struct.unpack("<q" if little else ">q", f.read(8))
      raw = f.read(numel * _itemsize(dtype))
      if len(raw) != numel * _itemsize(dtype):
        raise TorchFileError(f"{path}: storage {key} is truncated")
      bases[key] = _Storage(dtype, _decode(raw, dtype, little))

    def load_storage(args: tuple[Any, ...]) -> _Storage:
      _, key, _, _ = args[:4]
      view = args[4] if len(args) > 4 else None
      base = bases[str(key)]
      if view is None:
        return base
      _, offset, size = view  # (view_key, offset, size) in elements.
      return _Storage(base.dtype, base.data[offset:offset + size])

    f.seek(obj_start)
    return _RestrictedUnpickler(f, load_storage).load()


def _no_storage(args: tuple[Any, ...]) -> _Storage:
  raise TorchFileError(f"unexpected storage in header: {args!r}")


def load_torch_file(path: str | os.PathLike[str]) -> Any:
  """Loads a `torch.save` file without torch; tensors become NumPy arrays.

  Args:
    path: a `.pth`/`.pt`/`.ckpt` file in the zip or legacy format.

  Returns:
    The saved object (dicts/OrderedDicts/lists of `np.ndarray`, numbers, ...).

  Raises:
    UnsafeCheckpointError: the pickle references a disallowed global.
    TorchFileError: the file is not a (supported) torch checkpoint.
  """
  path = os.fspath(path)
  if zipfile.is_zipfile(path):
    return _load_zip(path)
  with open(path, "rb") as f:
    head = f.read(2)
  if head[:1] == b"\x80":  # A pickle stream: the legacy format.
    return _load_legacy(path)
  if tarfile.is_tarfile(path):
    raise TorchFileError(
        f"{path}: pre-0.4 tar-format torch checkpoint is not supported; "
        "re-save it with a recent torch (torch.save(torch.load(p), p))")
  raise TorchFileError(f"{path}: not a PyTorch checkpoint (zip or legacy)")


def _flatten(tree: Mapping[str, Any], prefix: str,
             out: dict[str, np.ndarray]) -> None:
  for k, v in tree.items():
    name = f"{prefix}{k}"
    if isinstance(v, Mapping):
      _flatten(v, name + ".", out)
    elif isinstance(v, np.ndarray):
      out[name] = v
    else:
      raise TypeError(
          f"state dict entry {name!r} is a {type(v).__name__}, not an array; "
          "pass `key=` to select the sub-dict holding the weights")


def state_dict_from_checkpoint(obj: Any, key: str | None = None,
                               strip_prefix: str = "module."
                               ) -> dict[str, np.ndarray]:
  """Extracts a flat `{name: array}` state dict from a loaded checkpoint.

  Args:
    obj: the result of `load_torch_file`.
    key: sub-dict to select, dotted for nesting (e.g. "generator" or
      "models.generator"). If None, uses `obj["state_dict"]` when present,
      else `obj`.
    strip_prefix: prefix removed from every name that has it (DataParallel).

  Returns:
    A dict from dotted parameter names to arrays; nested dicts are flattened.
  """
  if key is not None:
    for part in key.split("."):
      if not isinstance(obj, Mapping) or part not in obj:
        have = list(obj) if isinstance(obj, Mapping) else type(obj).__name__
        raise KeyError(f"checkpoint has no {key!r} (at {part!r}; has {have})")
      obj = obj[part]
  elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
    obj = obj["state_dict"]
  if not isinstance(obj, Mapping):
    raise TypeError(f"expected a dict of tensors, got {type(obj).__name__}")
  flat: dict[str, np.ndarray] = {}
  _flatten(obj, "", flat)
  out: dict[str, np.ndarray] = {}
  for name, value in flat.items():
    if strip_prefix and name.startswith(strip_prefix):
      name = name[len(strip_prefix):]
    if name in out:
      raise ValueError(
          f"duplicate key {name!r} after stripping {strip_prefix!r}")
    out[name] = value
  return out
