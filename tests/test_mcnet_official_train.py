"""The official training-step replay passes on the shared fixture, and fails on planted recipe faults.

One float64 replay of the step (compile + run: ~2 min on 2 free cores, more on a busy machine) is
shared by all tests; each fault is planted on its already-computed pieces by recomputing, with our
own library functions, exactly the quantities the fault changes.
"""
import copy
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkingmem.mcnet import losses
from talkingmem.mcnet.memory import memory_target
from talkingmem.mcnet.tools import official_train_parity as parity

FIXTURE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "mcnet_official_train"


@pytest.fixture(scope="module")
def replayed():
  if not (FIXTURE / "io64.npz").exists():
    pytest.skip(f"training fixture absent at {FIXTURE} (CI clones the repo with shared/ beside it)")
  previous = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    with jax.default_matmul_precision("highest"):
      fixture = parity.load_fixture(FIXTURE)
      yield fixture, parity.replay(fixture)
  finally:
    jax.config.update("jax_enable_x64", previous)


def _failures(fixture, ours) -> list[str]:
  rows, uncompared = parity.compare(fixture, ours)
  return [f"{r.group}:{r.name}" for r in rows if not r.ok] + uncompared


def test_replay_matches_official_step(replayed):
  fixture, ours = replayed
  rows, uncompared = parity.compare(fixture, ours)
  assert not uncompared
  assert not [r for r in rows if not r.ok], parity.format_table(rows)
  groups = {r.group for r in rows}
  assert {"loss", "loss_part", "io64", "io32", "grad", "grad_zero", "bn_stats", "adam"} <= groups
  assert sum(r.group == "grad" for r in rows) + sum(r.group == "grad_zero" for r in rows) == 44 + 159


def _without_stop_gradient(fixture, ours):
  """feat_consistent's target not detached: the extra cotangent on the projected features reaches
  feat_forward_proj_32.bias as its sum over pixels (d feat / d bias = 1)."""
  feat = jnp.asarray(ours.arrays["gen.visual_feat_32"].transpose(0, 2, 3, 1))
  value = jnp.asarray(ours.arrays["feat_consistent.value_32"].transpose(0, 2, 3, 1))
  weight = fixture.config["loss_weights_used_by_GeneratorFullModel"]["feat_consistent"]
  extra = jax.grad(lambda f: weight * jnp.mean(jnp.abs(value - memory_target(f, value.shape[1:3]))))(feat)
  ours.grads["generator"]["mbUnit.feat_forward_proj_32.bias"] += np.asarray(extra.sum((0, 1, 2)))


def _other_align_corners(fixture, ours):
  driving = jnp.asarray(fixture.io["input.driving"].transpose(0, 2, 3, 1), jnp.float64)
  frame = losses.transform_frame(parity.recorded_transform(fixture.io), driving, align_corners=True)
  ours.arrays["transformed_frame"] = np.asarray(frame).transpose(0, 3, 1, 2)


def _weight_off_by_ten_percent(fixture, ours):
  del fixture
  ours.terms["total"] += 0.1 * ours.terms["feat_consistent"]
  ours.terms["feat_consistent"] *= 1.1


def _jacobian_transposed(fixture, ours):
  a = ours.arrays
  jac = np.swapaxes(a["equivariance.transform_jacobian_at_transformed_kp"], -1, -2)
  composed = a["equivariance.inv_kp_driving_jacobian"] @ (jac @ a["transformed_kp.jacobian"])
  weight = fixture.config["loss_weights_used_by_GeneratorFullModel"]["equivariance_jacobian"]
  term = weight * float(np.mean(np.abs(np.eye(2) - composed)))
  ours.terms["total"] += term - ours.terms["equivariance_jacobian"]
  ours.terms["equivariance_jacobian"] = term
  a["equivariance.transform_jacobian_at_transformed_kp"] = jac
  a["equivariance.product"] = composed


@pytest.mark.parametrize("plant, expected", [
    (_without_stop_gradient, "grad:generator.mbUnit.feat_forward_proj_32.bias"),
    (_other_align_corners, "io32:transformed_frame"),
    (_weight_off_by_ten_percent, "loss:feat_consistent"),
    (_jacobian_transposed, "loss:equivariance_jacobian"),
])
def test_planted_fault_fails(replayed, plant, expected):
  fixture, ours = replayed
  faulty = copy.deepcopy(ours)
  plant(fixture, faulty)  # The module fixture keeps x64 on while these tests run.
  assert expected in _failures(fixture, faulty)
