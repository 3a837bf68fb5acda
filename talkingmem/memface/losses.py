"""MemFace losses. Stage 1 (audio-to-expression, eq. 4): coefficient L2 + mouth-vertex L2 + memory
decorrelation. The paper's weights were lost from the text; defaults follow the public
reimplementation (1, 10, 1) and are arguments.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from talkingmem.memface import memory as memory_lib


class MouthModel(NamedTuple):
  """A linear 3D face model restricted to the mouth vertices (a pytree, so it can enter jit).

  vertices = mean + id . id_basis + exp . exp_basis for Vm mouth vertices; bases are
  component-first, as the repo's face-model schema (data_pipelines/synthetic/engine/face_model.py).
  """
  mean: jax.Array  # (Vm, 3)
  id_basis: jax.Array  # (K_id, Vm, 3)
  exp_basis: jax.Array  # (K_exp, Vm, 3)

  @classmethod
  def from_full(cls, mean, id_basis, exp_basis, mouth_index, exp_index=None) -> MouthModel:
    """Keeps the `mouth_index` vertices and, if given, the `exp_index` expression components
    (the ones the audio-to-expression model predicts, in its output order)."""
    mouth_index = np.asarray(mouth_index)
    exp_basis = np.asarray(exp_basis)
    if exp_index is not None:
      exp_basis = exp_basis[np.asarray(exp_index)]
    return cls(jnp.asarray(np.asarray(mean)[mouth_index], jnp.float32),
               jnp.asarray(np.asarray(id_basis)[:, mouth_index], jnp.float32),
               jnp.asarray(exp_basis[:, mouth_index], jnp.float32))


def face_vertices(model: MouthModel, id_coeffs: jax.Array, exp_coeffs: jax.Array) -> jax.Array:
  """(..., K_id), (..., K_exp) -> (..., Vm, 3) vertex positions."""
  return (model.mean + jnp.einsum("kvc,...k->...vc", model.id_basis, id_coeffs)
          + jnp.einsum("kvc,...k->...vc", model.exp_basis, exp_coeffs))


def _masked_mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Mean of x (B, T, ...) over everything, counting only frames where mask (B, T) is true."""
  if mask is None:
    return jnp.mean(x)
  per_frame = x.reshape(x.shape[:2] + (-1,)).mean(-1)
  weights = mask.astype(x.dtype)
  return jnp.sum(per_frame * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def coefficient_loss(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Mean squared error over coefficients and (valid) frames."""
  return _masked_mean(jnp.square(pred - target), mask)


def mouth_vertex_loss(pred_exp: jax.Array, target_exp: jax.Array, id_coeffs: jax.Array,
                      model: MouthModel, mask: jax.Array | None = None) -> jax.Array:
  """Mean squared Euclidean distance between predicted and true mouth vertices.

  id_coeffs broadcast against the (B, T) frames (e.g. (B, 1, K_id) for one identity per clip).
  """
  pred = face_vertices(model, id_coeffs, pred_exp)
  target = face_vertices(model, id_coeffs, target_exp)
  return _masked_mean(jnp.sum(jnp.square(pred - target), -1), mask)


def a2e_loss(pred_exp: jax.Array, target_exp: jax.Array, params: Mapping[str, Any],
             id_coeffs: jax.Array | None = None, model: MouthModel | None = None,
             mask: jax.Array | None = None, w_exp: float = 1.0, w_vertex: float = 10.0,
             w_reg: float = 1.0) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Eq. 4 total: w_exp L_exp + w_vertex L_ver + w_reg L_reg, and each term for logging.

  The vertex term needs `model` (and `id_coeffs`); L_reg is summed over the implicit memories found
  in `params` (0 without one, e.g. the 'none' / 'explicit' ablations).
  """
  terms = {"exp": coefficient_loss(pred_exp, target_exp, mask)}
  if model is not None:
    if id_coeffs is None:
      id_coeffs = jnp.zeros(model.id_basis.shape[:1], pred_exp.dtype)
    terms["vertex"] = mouth_vertex_loss(pred_exp, target_exp, id_coeffs, model, mask)
  terms["reg"] = memory_lib.memory_regularizer_from_params(params)
  weights = {"exp": w_exp, "vertex": w_vertex, "reg": w_reg}
  total = sum(weights[k] * v for k, v in terms.items())
  return total, terms
