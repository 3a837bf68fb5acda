"""Attention statistics tell a uniform (ignored) memory from a sharp, narrowly used one."""
from __future__ import annotations

import numpy as np
import pytest

from talkingmem.metrics import attention


def test_uniform_attention():
  stats = attention.attention_statistics(np.full((5, 8), 1 / 8))
  assert stats["entropy_ratio"] == pytest.approx(1.0)
  assert stats["effective_slots"] == pytest.approx(8.0)
  assert stats["top1_weight"] == pytest.approx(1 / 8)


def test_sharp_attention_on_few_slots():
  weights = np.zeros((6, 10))
  weights[np.arange(6), [2, 2, 5, 5, 7, 7]] = 1.0
  stats = attention.attention_statistics(weights)
  assert stats["entropy"] == pytest.approx(0.0, abs=1e-9)
  assert (stats["slots_used"], stats["slots_used_fraction"]) == (3, 0.3)
  assert stats["effective_slots"] == pytest.approx(3.0)
  assert stats["top1_weight"] == 1.0


def test_rejects_bad_shapes():
  with pytest.raises(ValueError, match="frames, slots"):
    attention.attention_statistics(np.ones((2, 3, 4)))
