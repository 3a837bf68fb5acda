"""Cross-attention from feature positions (queries) to memory positions (keys/values)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def memory_cross_attention(query: jax.Array, key: jax.Array, value: jax.Array, scale: float,
                           chunk_size: int | None = None) -> jax.Array:
  """softmax(q k^T * scale) v over memory positions.

  query: (B, H, W, D); key, value: (B, S, S, D) -> (B, H, W, D). Positions are flattened row-major.
  chunk_size bounds the (B, chunk, S*S) score matrix by scanning query chunks (memory, not FLOPs).
  """
  b, h, w, d = query.shape
  q = query.reshape(b, h * w, d)
  k = key.reshape(b, -1, d)
  v = value.reshape(b, -1, d)

  def attend(qc: jax.Array) -> jax.Array:
    scores = jnp.einsum("bqd,bkd->bqk", qc, k) * scale
    return jnp.einsum("bqk,bkd->bqd", jax.nn.softmax(scores, axis=-1), v)

  n = h * w
  if chunk_size is None or chunk_size >= n or n % chunk_size:
    out = attend(q)
  else:
    chunks = q.reshape(b, n // chunk_size, chunk_size, d).transpose(1, 0, 2, 3)
    out = jax.lax.map(attend, chunks).transpose(1, 0, 2, 3).reshape(b, n, d)
  return out.reshape(b, h, w, d)
