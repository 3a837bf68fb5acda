"""What the TFDS builders and stores of the FOMM and speech datasets share.

  LocalBuilder      a GeneratorBasedBuilder that reads its manual dir only (never the network)
  prepare_builder   builds one into ArrayRecord, from a source folder
  find_builder_dir  the built dataset's folder under a `--out` dir
  cached_json       an index of the records, scanned once and cached next to them
  encode_npz / decode_npz   arrays <-> the bytes of an .npz, for schema-free array features
"""
from __future__ import annotations

import inspect
import io
import json
import os
import pathlib
from collections.abc import Callable
from typing import Any

from etils import epath
import numpy as np
import tensorflow_datasets as tfds


class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the builders here: not registered by name, built from `manual_dir`."""

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default probes `importlib_resources`, which TFDS 4.9.10 imports
    # but does not declare for Python >= 3.9; the file path is all it needs.
    return epath.Path(inspect.getfile(cls))


def prepare_builder(builder_cls: type[LocalBuilder], config: Any, source: str | os.PathLike,
                    out: str | os.PathLike) -> tuple[LocalBuilder, bool]:
  """Builds `builder_cls` (with `config`) from the folder `source` into `out` as ArrayRecord.

  Returns:
    The builder and whether the dataset was already built (then nothing is regenerated).
  """
  source = pathlib.Path(source).resolve()
  if not source.is_dir():
    raise FileNotFoundError(f"source {source} is not a folder")
  builder = builder_cls(data_dir=str(pathlib.Path(out).resolve()), config=config,
                        file_format="array_record")
  reused = (pathlib.Path(builder.data_dir) / "dataset_info.json").is_file()
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(source), try_download_gcs=False))
  return builder, reused


def find_builder_dir(root: str | os.PathLike, dataset: str | None = None) -> pathlib.Path:
  """The folder with `dataset_info.json` in root or up to 3 levels below.

  `root` may be the builder dir itself or the `--out` dir of a build
  (`out/<dataset>/<config>/<version>`); `dataset` picks among several.
  """
  root = pathlib.Path(root)
  if dataset and (root / dataset).is_dir():
    root = root / dataset
  for depth in range(4):
    pattern = "/".join(["*"] * depth + ["dataset_info.json"])
    found = sorted(root.glob(pattern))
    if len(found) == 1:
      return found[0].parent
    if len(found) > 1:
      raise ValueError(f"several TFDS datasets under {root}: "
                       f"{[str(p.parent) for p in found]}; pass one of them")
  raise FileNotFoundError(f"no built TFDS dataset (dataset_info.json) under {root}")


def cached_json(path: pathlib.Path, compute: Callable[[], Any]) -> Any:
  """The JSON in `path`, else `compute()`, written to `path` for next time when it can be."""
  if path.is_file():
    return json.loads(path.read_text())
  value = compute()
  try:  # A read-only dataset just computes it again next time.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
  except OSError:
    pass
  return value


def encode_npz(arrays: dict[str, np.ndarray]) -> bytes:
  """The bytes of an .npz of `arrays` (b'' for none)."""
  if not arrays:
    return b""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()


def decode_npz(data: bytes) -> dict[str, np.ndarray]:
  """The arrays of .npz bytes ({} for b'')."""
  if not data:
    return {}
  with np.load(io.BytesIO(data), allow_pickle=False) as npz:
    return {k: npz[k] for k in npz.files}
