"""Per-sample convolution lowerings ('grouped', 'vmap' and two matmul candidates) at the memory unit's shapes.

  python experiments/benchmark_per_sample_conv.py --sizes=demo --repeats=20
  python experiments/benchmark_per_sample_conv.py --sizes=official --convs=styleconv    # ~3 min on 2 cores
  python experiments/benchmark_per_sample_conv.py --sizes=official --convs=dynamic_conv \
      --methods=grouped,im2col,taps                                                    # ~3 min (vmap: ~2)

The memory unit runs two convolutions whose kernels differ per sample (talkingmem/nn/per_sample_conv.py):
StyleConv's modulated 3x3 conv C -> C on the (B, S, S, C) meta-memory, and the dynamic conv C -> 2C that
makes keys and values. Which lowering XLA runs faster decides `per_sample_conv.DEFAULT_METHOD`, so both
are timed forward and forward+backward (gradients for input and kernels, as in training).

'vmap' is not a different program: JAX's batching rule for a conv whose input and kernel are both batched
folds the batch into feature groups, i.e. emits the same grouped convolution. 'im2col' (in the library,
the CPU default) and 'taps' (not in the library) are timed beside them, because XLA:CPU runs grouped
convs, and above all their kernel gradient (a base-dilated convolution), far below its matmul speed:
- 'im2col': the 9 shifted views concatenated into (B, H*W, 9*Cin) patches, one batched matmul with the
  (B, 9*Cin, Cout) kernels (9x the input's memory for the patches);
- 'taps': the sum over the 9 taps of a batched (H*W, Cin) x (Cin, Cout) matmul (no patch copy).

One JSON line per (conv, sizes, method, pass): compile seconds, median seconds over --repeats runs after
a warm-up, XLA-counted and analytic GFLOPs (2 per MAC), achieved GFLOP/s, and the largest difference
from the first method's outputs (they must agree).
"""
from __future__ import annotations

import json
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from talkingmem.nn import per_sample_conv as psc

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["official", "demo"], "Size sets (see SIZES).")
flags.DEFINE_list("methods", ["grouped", "vmap", "im2col", "taps"], "Lowerings to compare.")
flags.DEFINE_list("convs", ["styleconv", "dynamic_conv"], "Convolutions to time (see CONVS).")
flags.DEFINE_list("passes", ["forward", "forward_backward"], "What to time.")
flags.DEFINE_integer("repeats", 5, "Timed repetitions (median reported).")
flags.DEFINE_string("tag", "", "Free-form label added to every JSON line.")

# memory_channels C, memory_size S, batch B (official: configs/mcnet.py default; demo: the tiny model).
SIZES = {"official": dict(c=512, s=32, b=8), "demo": dict(c=16, s=8, b=8)}
# (name, output channels as a multiple of C): StyleConv C -> C, dynamic conv C -> 2C (key and value).
CONVS = (("styleconv", 1), ("dynamic_conv", 2))


def _shifted_views(x: jax.Array, kh: int, kw: int, padding: int) -> list[jax.Array]:
  """The kh*kw windows of the zero-padded input, each (B, H', W', Cin), in (i, j) row-major order."""
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  xp = jnp.pad(x, pad)
  ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
  return [xp[:, i:i + ho, j:j + wo] for i in range(kh) for j in range(kw)]


def taps_conv(x: jax.Array, kernels: jax.Array, padding: int) -> jax.Array:
  """per_sample_conv as the sum over kernel taps of batched matmuls (no patch copy)."""
  kh, kw = kernels.shape[1:3]
  views = _shifted_views(x, kh, kw, padding)
  return sum(jnp.einsum("bhwc,bco->bhwo", v, kernels[:, t // kw, t % kw]) for t, v in enumerate(views))


CANDIDATES = {"taps": taps_conv}  # Not in the library; the others are psc methods.


def _inputs(c: int, s: int, b: int, out_mult: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((b, s, s, c)), jnp.float32)
  k = jnp.asarray(rng.standard_normal((b, 3, 3, c, out_mult * c)) / np.sqrt(9 * c), jnp.float32)
  ct = jnp.asarray(rng.standard_normal((b, s, s, out_mult * c)), jnp.float32)
  return x, k, ct


def _fn(method: str, which: str):
  if method in CANDIDATES:
    conv = lambda x, k: CANDIDATES[method](x, k, 1)  # noqa: E731
  else:
    conv = lambda x, k: psc.per_sample_conv(x, k, 1, method)  # noqa: E731
  if which == "forward":
    return jax.jit(conv)
  # The output and the gradients for both operands, the cotangent standing in for the loss's (as in the
  # train step; returning the output keeps XLA from dropping the forward pass).
  def forward_backward(x, k, ct):
    out, vjp = jax.vjp(conv, x, k)
    return out, vjp(ct)
  return jax.jit(forward_backward)


def _time(compiled, args, repeats: int) -> tuple[float, object]:
  out = jax.block_until_ready(compiled(*args))  # warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times)), out


def _max_diff(a, b) -> float:
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main(argv):
  del argv
  base = {"device": jax.devices()[0].device_kind, "num_devices": jax.device_count(),
          "date": time.strftime("%Y-%m-%d"), "tag": FLAGS.tag}
  for size_name in FLAGS.sizes:
    sz = SIZES[size_name]
    for conv_name, out_mult in CONVS:
      if conv_name not in FLAGS.convs:
        continue
      x, k, ct = _inputs(sz["c"], sz["s"], sz["b"], out_mult)
      macs = sz["b"] * sz["s"] ** 2 * 9 * sz["c"] * out_mult * sz["c"]
      for which in FLAGS.passes:
        args = (x, k) if which == "forward" else (x, k, ct)
        analytic = 2 * macs * (1 if which == "forward" else 3)  # + input and kernel gradients
        outputs = {}
        for method in FLAGS.methods:
          t0 = time.perf_counter()
          compiled = _fn(method, which).lower(*args).compile()
          compile_s = time.perf_counter() - t0
          cost = compiled.cost_analysis()
          cost = cost[0] if isinstance(cost, (list, tuple)) else cost
          xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
          seconds, outputs[method] = _time(compiled, args, FLAGS.repeats)
          row = base | {"conv": conv_name, "sizes": size_name, **sz, "cout": out_mult * sz["c"],
                        "method": method, "pass": which, "compile_s": round(compile_s, 3),
                        "median_s": round(seconds, 6), "repeats": FLAGS.repeats,
                        "analytic_gflops": round(analytic / 1e9, 4),
                        "xla_gflops": round(xla_flops / 1e9, 4),
                        "gflop_per_s": round(analytic / seconds / 1e9, 2)}
          if len(outputs) > 1:
            row["max_abs_diff_vs_" + FLAGS.methods[0]] = _max_diff(outputs[FLAGS.methods[0]],
                                                                   outputs[method])
          print(json.dumps(row), flush=True)


if __name__ == "__main__":
  app.run(main)
