"""Cross-attention from feature positions (queries) to memory positions (keys/values)."""
from __future__ import annotations

import functools

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


def _query_chunks(x: jax.Array, chunk: int) -> jax.Array:
  """(B, N, D) -> (N / chunk, B, chunk, D): the axis lax.map / scan walks."""
  b, n, d = x.shape
  return x.reshape(b, n // chunk, chunk, d).transpose(1, 0, 2, 3)


def _from_chunks(x: jax.Array) -> jax.Array:
  m, b, c = x.shape[:3]
  return x.transpose(1, 0, 2, *range(3, x.ndim)).reshape(b, m * c, *x.shape[3:])


def _flash_forward(q, k, v, scale, chunk):
  """Output and per-query log-sum-exp, one query chunk at a time (scores never all live at once)."""

  def attend(qc):
    scores = jnp.einsum("bqd,bkd->bqk", qc, k, preferred_element_type=jnp.float32) * scale
    lse = jax.nn.logsumexp(scores, axis=-1)
    probs = jnp.exp(scores - lse[..., None])
    return jnp.einsum("bqk,bkd->bqd", probs.astype(v.dtype), v), lse

  out, lse = jax.lax.map(attend, _query_chunks(q, chunk))
  return _from_chunks(out), _from_chunks(lse)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _flash(q, k, v, scale, chunk):
  return _flash_forward(q, k, v, scale, chunk)[0]


def _flash_fwd(q, k, v, scale, chunk):
  out, lse = _flash_forward(q, k, v, scale, chunk)
  return out, (q, k, v, out, lse)  # O(N·D) residuals: no (N, S²) probabilities kept for the backward


def _flash_bwd(scale, chunk, residuals, d_out):
  """Recomputes each chunk's probabilities from the saved log-sum-exp (FlashAttention's backward)."""
  q, k, v, out, lse = residuals
  f32 = jnp.float32
  delta = jnp.sum(d_out.astype(f32) * out.astype(f32), axis=-1)  # rowsum(dO ∘ O)

  def step(carry, xs):
    dk, dv = carry
    qc, doc, lsec, deltac = xs
    scores = jnp.einsum("bqd,bkd->bqk", qc, k, preferred_element_type=f32) * scale
    probs = jnp.exp(scores - lsec[..., None])
    dv = dv + jnp.einsum("bqk,bqd->bkd", probs, doc.astype(f32))
    dprobs = jnp.einsum("bqd,bkd->bqk", doc.astype(f32), v.astype(f32))
    dscores = probs * (dprobs - deltac[..., None]) * scale
    dq = jnp.einsum("bqk,bkd->bqd", dscores, k.astype(f32))
    dk = dk + jnp.einsum("bqk,bqd->bkd", dscores, qc.astype(f32))
    return (dk, dv), dq

  zeros = jnp.zeros(k.shape, f32), jnp.zeros(v.shape, f32)
  per_query = lambda t: _query_chunks(t[..., None], chunk)[..., 0]  # noqa: E731 (B, N) rows
  xs = (_query_chunks(q, chunk), _query_chunks(d_out, chunk), per_query(lse), per_query(delta))
  (dk, dv), dq = jax.lax.scan(step, zeros, xs)
  return _from_chunks(dq).astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


_flash.defvjp(_flash_fwd, _flash_bwd)


def flash_memory_cross_attention(query: jax.Array, key: jax.Array, value: jax.Array, scale: float,
                                 chunk_size: int = 1024) -> jax.Array:
  """memory_cross_attention with FlashAttention's memory behaviour, for any head dim (MCNet's is 512,
  over cuDNN's fused-attention limit): query chunks of `chunk_size`, and a custom VJP that keeps only
  q, k, v, the output and one log-sum-exp per query, recomputing each chunk's probabilities in the
  backward. Scores and the softmax statistics are float32 whatever the input dtype. The memory side
  (S² keys, 1024 at vox-256) is small, so keys are not blocked."""
  b, h, w, d = query.shape
  n = h * w
  chunk = chunk_size if chunk_size and n % chunk_size == 0 else n
  out = _flash(query.reshape(b, n, d), key.reshape(b, -1, d), value.reshape(b, -1, d), scale, chunk)
  return out.reshape(b, h, w, d)
