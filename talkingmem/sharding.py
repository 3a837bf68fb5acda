"""Device mesh and shardings: data parallel over a 1-D 'data' axis, parameters replicated."""
from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh over all (or the first `num_devices`) devices of every process."""
  devices = jax.devices() if num_devices is None else jax.devices()[:num_devices]
  # Auto axes: XLA propagates shardings (explicit-sharding types would need every op annotated).
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) axis split over the data axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def global_batch(local_batch: Mapping[str, Any], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Each process's numpy batch -> global arrays sharded on the batch axis (numeric leaves only)."""
  sharding = data_sharded(mesh)
  out = {}
  for key, value in local_batch.items():
    value = np.asarray(value)
    if value.dtype.kind in "biuf":
      out[key] = jax.make_array_from_process_local_data(sharding, value)
  return out


def check_batch_size(global_batch_size: int, mesh: jax.sharding.Mesh) -> None:
  if global_batch_size % mesh.devices.size:
    raise ValueError(f"global batch {global_batch_size} is not divisible by {mesh.devices.size} devices; "
                     "set config.data.batch_size to a multiple of the device count")
