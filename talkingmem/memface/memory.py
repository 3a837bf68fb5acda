"""MemFace's memories for the audio-to-expression stage (paper Sec. 3.1-3.2, ablation of Sec. 4.3).

Implicit memory: M learned key/value pairs (M = 1000, d = 64 in the paper). The encoder feature q
reads softmax(q K^T / sqrt(d)) V, and the read is added element-wise to q (eq. 2-3), so the memory can
only *complement* the audio, never replace it. A decorrelation term (eq. 4) keeps slots distinct.

Explicit memory (the "w/ expl. mem." ablation): keys are audio features and values are expression
coefficients taken from training frames; nothing in the memory is learned. The arrays live in the
'memory' variable collection (not 'params', so optimisers skip them) and are filled after init with
`fill_explicit_memory(variables, build_explicit_memory(...))`.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

MEMORY_COLLECTION = "memory"
Initializer = Callable[..., jax.Array]


def memory_attention(query: jax.Array, keys: jax.Array, values: jax.Array,
                     scale: float | None = None) -> tuple[jax.Array, jax.Array]:
  """Scaled dot-product read: (..., d) x (M, d) x (M, e) -> read (..., e), weights (..., M)."""
  if scale is None:
    scale = 1.0 / np.sqrt(keys.shape[-1])
  logits = jnp.einsum("...d,md->...m", query, keys) * scale
  weights = jax.nn.softmax(logits, axis=-1)
  return jnp.einsum("...m,me->...e", weights, values), weights


class ImplicitMemory(nn.Module):
  """Learned key/value memory; returns (query + read, attention weights).

  Attributes:
    num_slots: M, the number of key/value pairs.
    dim: d, the size of keys, values and the query.
    project: learn W_q, W_k of eq. 2 on query and keys (off: q and K are compared directly, as in
      the paper's eq. 3 and the public reimplementation).
  """
  num_slots: int = 1000
  dim: int = 64
  project: bool = False
  key_init: Initializer = nn.initializers.normal(1.0)
  value_init: Initializer = nn.initializers.normal(1.0)

  @nn.compact
  def __call__(self, query: jax.Array) -> tuple[jax.Array, jax.Array]:
    if query.shape[-1] != self.dim:
      raise ValueError(f"query dim {query.shape[-1]} != memory dim {self.dim}")
    keys = self.param("keys", self.key_init, (self.num_slots, self.dim))
    values = self.param("values", self.value_init, (self.num_slots, self.dim))
    q, k = query, keys
    if self.project:
      q = nn.Dense(self.dim, use_bias=False, name="query_proj")(q)
      k = nn.Dense(self.dim, use_bias=False, name="key_proj")(k)
    read, weights = memory_attention(q, k, values)
    return query + read, weights


def mean_pairwise_cosine(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Mean cosine similarity over ordered pairs i != j of the rows of x (M, d).

  Uses sum_{i != j} <u_i, u_j> = |sum_i u_i|^2 - sum_i |u_i|^2 for unit rows u_i: O(M d), no M x M.
  0 for mutually orthogonal rows, 1 for identical rows.
  """
  m = x.shape[0]
  if m < 2:
    return jnp.zeros((), x.dtype)
  unit = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)
  total = unit.sum(0)
  return (jnp.sum(total * total) - jnp.sum(unit * unit)) / (m * (m - 1))


def memory_regularizer(keys: jax.Array, values: jax.Array) -> jax.Array:
  """Eq. 4's L_reg: (sum_{i!=j} cos(k_i, k_j) + sum_{i!=j} cos(v_i, v_j)) / (M (M - 1))."""
  return mean_pairwise_cosine(keys) + mean_pairwise_cosine(values)


def _memory_paths(params: Mapping[str, Any]) -> list[tuple[str, ...]]:
  """Paths of every sub-dict holding both 'keys' and 'values' leaves (one per implicit memory)."""
  flat = traverse_util.flatten_dict(params)
  parents = {path[:-1] for path in flat if path[-1] == "keys"}
  return sorted(p for p in parents if p + ("values",) in flat)


def memory_regularizer_from_params(params: Mapping[str, Any]) -> jax.Array:
  """Sum of `memory_regularizer` over the implicit memories in a params tree (0 if none)."""
  flat = traverse_util.flatten_dict(params)
  terms = [memory_regularizer(flat[p + ("keys",)], flat[p + ("values",)])
           for p in _memory_paths(params)]
  return sum(terms, jnp.zeros(()))


def memory_param_labels(params: Mapping[str, Any]) -> Any:
  """'memory' for implicit-memory keys/values, 'model' elsewhere: for optax.multi_transform.

  MemFace updates the memory and the rest of the model on alternate steps in the first half of
  training (supplement B.2); label-based transforms make that a config choice of the trainer.
  """
  memories = set(_memory_paths(params))
  flat = traverse_util.flatten_dict(params)
  labels = {path: ("memory" if path[:-1] in memories and path[-1] in ("keys", "values")
                   else "model") for path in flat}
  return traverse_util.unflatten_dict(labels)


class ExplicitMemory(nn.Module):
  """Non-parametric lookup: audio-feature keys -> coefficient values, merged into the hidden state.

  The query feature is centred with the stored key mean and L2-normalised like the keys, so the
  read is softmax(cos(q, k) / temperature) V. The read coefficients are mapped to the hidden size by
  a learned Dense and added to `hidden` (the same merge as the implicit memory).
  """
  size: int
  value_dim: int
  temperature: float = 0.1

  @nn.compact
  def __call__(self, query_features: jax.Array, hidden: jax.Array) -> tuple[jax.Array, jax.Array]:
    key_dim = query_features.shape[-1]
    keys = self.variable(MEMORY_COLLECTION, "keys", jnp.zeros, (self.size, key_dim))
    values = self.variable(MEMORY_COLLECTION, "values", jnp.zeros, (self.size, self.value_dim))
    key_mean = self.variable(MEMORY_COLLECTION, "key_mean", jnp.zeros, (key_dim,))
    q = _unit(query_features - key_mean.value)
    read, weights = memory_attention(q, keys.value, values.value, scale=1.0 / self.temperature)
    return hidden + nn.Dense(hidden.shape[-1], name="value_proj")(read), weights


def _unit(x, eps: float = 1e-8):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def farthest_point_indices(points: np.ndarray, count: int, first: int = 0) -> np.ndarray:
  """Greedy farthest-point selection by RMS distance (supplement Alg. 1's "most dissimilar")."""
  points = np.asarray(points, np.float64).reshape(len(points), -1)
  count = min(count, len(points))
  chosen = [first]
  dist = np.sqrt(((points - points[first]) ** 2).mean(-1))
  for _ in range(count - 1):
    nxt = int(np.argmax(dist))
    chosen.append(nxt)
    dist = np.minimum(dist, np.sqrt(((points - points[nxt]) ** 2).mean(-1)))
  return np.asarray(chosen)


def build_explicit_memory(features: np.ndarray, coeffs: np.ndarray, size: int,
                          select_by: np.ndarray | None = None, method: str = "farthest",
                          rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
  """Memory arrays from N training frames: features (N, ...) -> keys, coeffs (N, C) -> values.

  Args:
    features: per-frame audio features (e.g. (N, W, D) windows), flattened to keys.
    coeffs: per-frame expression coefficients.
    size: slots; fewer than N frames are chosen, and missing slots (size > N) repeat frames.
    select_by: what "dissimilar" is measured on (default coeffs; the paper uses mouth vertices).
    method: 'farthest' (greedy RMS farthest points) or 'random'.
    rng: for 'random'.
  """
  features = np.asarray(features, np.float32).reshape(len(features), -1)
  coeffs = np.asarray(coeffs, np.float32)
  if method == "farthest":
    idx = farthest_point_indices(coeffs if select_by is None else select_by, size)
  elif method == "random":
    idx = (rng or np.random.default_rng(0)).permutation(len(features))[:size]
  else:
    raise ValueError(f"method must be 'farthest' or 'random', got {method!r}")
  idx = np.resize(idx, size)  # Repeats when size > N, so shapes always match the module.
  key_mean = features.mean(0)
  keys = features[idx] - key_mean
  keys /= np.maximum(np.linalg.norm(keys, axis=-1, keepdims=True), 1e-8)
  return {"keys": keys.astype(np.float32), "values": coeffs[idx], "key_mean": key_mean}


def fill_explicit_memory(variables: Mapping[str, Any], memory: Mapping[str, np.ndarray]) -> dict:
  """Returns `variables` with the (single) explicit memory's arrays replaced by `memory`'s."""
  flat = traverse_util.flatten_dict(dict(variables[MEMORY_COLLECTION]))
  parents = {path[:-1] for path in flat}
  if len(parents) != 1:
    raise ValueError(f"expected exactly one explicit memory, found {sorted(parents)}")
  (parent,) = parents
  for name, array in memory.items():
    old = flat[parent + (name,)]
    if old.shape != array.shape:
      raise ValueError(f"memory {name}: shape {array.shape} != module's {old.shape}")
    flat[parent + (name,)] = jnp.asarray(array, old.dtype)
  return {**variables, MEMORY_COLLECTION: traverse_util.unflatten_dict(flat)}
