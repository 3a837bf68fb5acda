"""Statistics of memory attention: is a memory read sharply, and how much of it is ever used?

MemFace's memories are read by softmax attention over N slots. Near-uniform weights (entropy close
to log N) average all slots into one constant, so the memory adds a bias and no content; a sharp
read that always picks the same few slots uses a small part of it. These numbers tell the two apart.
"""
from __future__ import annotations

import numpy as np


def attention_statistics(weights: np.ndarray) -> dict[str, float]:
  """Summary of attention rows.

  Args:
    weights: (F, N) attention of F query frames over N slots, each row summing to 1 (flatten any
      speaker axis into N first).

  Returns:
    entropy (nats, mean over frames), entropy_ratio (entropy / log N: 1 = uniform), top1_weight
    (mean largest weight), slots_used (distinct argmax slots over the frames) and its fraction of
    N, effective_slots (exp of the entropy of the mean attention: how many slots carry the mass
    overall), frames and slots.
  """
  w = np.asarray(weights, np.float64)
  if w.ndim != 2 or not len(w):
    raise ValueError(f"expected (frames, slots) weights with frames > 0, got shape {w.shape}")
  frames, slots = w.shape
  entropy = -np.sum(w * np.log(np.maximum(w, 1e-12)), -1)
  usage = w.mean(0)
  usage_entropy = -np.sum(usage * np.log(np.maximum(usage, 1e-12)))
  used = len(np.unique(w.argmax(-1)))
  return {"frames": int(frames), "slots": int(slots), "entropy": float(entropy.mean()),
          "entropy_ratio": float(entropy.mean() / np.log(slots)) if slots > 1 else 0.0,
          "top1_weight": float(w.max(-1).mean()), "slots_used": int(used),
          "slots_used_fraction": float(used / slots),
          "effective_slots": float(np.exp(usage_entropy))}
