"""The generic trainer: sharding invariance, learning, NaN skipping, and kill-and-resume equality."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkingmem import sharding, train
from talkingmem.task import get_task

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "configs"))
import mcnet as mcnet_configs  # noqa: E402


def _config(tmp_root: pathlib.Path):
  c = mcnet_configs.get_config("tiny")
  c.data.root = str(tmp_root / "data")
  return c


def _smooth_batch(n: int, size: int, seed: int) -> dict:
  """Frames of smooth random patterns; driving = source shifted by a few pixels."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size] / size
  frames = []
  for _ in range(n):
    f = [np.sin(2 * np.pi * (rng.uniform(0.5, 2) * xx + rng.uniform(0.5, 2) * yy + rng.uniform()))
         for _ in range(3)]
    frames.append(0.5 + 0.4 * np.stack(f, -1))
  src = np.asarray(frames, np.float32)
  drv = np.roll(src, shift=2, axis=2)
  return {"source": src, "driving": drv}


class Runner:
  """A compiled init and train step on an n-device mesh (compiled once per module)."""

  def __init__(self, task, tx, schedule, num_devices: int):
    self.mesh = sharding.make_mesh(num_devices)
    repl = sharding.replicated(self.mesh)
    self.task = task
    self.init = jax.jit(lambda b: train.create_train_state(task, tx, jax.random.PRNGKey(0), b),
                        out_shardings=repl)
    self.step = jax.jit(train.make_train_step(task, tx, schedule, jax.random.PRNGKey(1)))

  def batch(self, batch):
    return sharding.global_batch(batch, self.mesh)

  def losses(self, batch, steps: int):
    gbatch = self.batch(batch)
    state = self.init(gbatch)
    out = []
    for _ in range(steps):
      state, metrics = self.step(state, gbatch)
      out.append(float(metrics["loss"]))
    return state, out


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
  config = _config(tmp_path_factory.mktemp("train"))
  task = get_task(config)
  tx, schedule = task.optimizer(100)
  batch = _smooth_batch(8, config.model.image_size, 0)
  return task, batch, Runner(task, tx, schedule, 1)


def test_same_loss_on_1_and_8_devices(tiny_setup):
  """Two training steps: same losses whether the batch is on 1 device or sharded over 8.

  Gradients are not compared element by element: the L1 and relu terms (equivariance residuals are
  near zero at initialisation) have subgradients that flip sign under reduction-order rounding.
  """
  assert jax.device_count() == 8, "tests/conftest.py simulates 8 CPU devices"
  task, batch, one = tiny_setup
  eight = Runner(task, *task.optimizer(100), 8)
  _, losses1 = one.losses(batch, 2)
  _, losses8 = eight.losses(batch, 2)
  np.testing.assert_allclose(losses1, losses8, rtol=2e-5)


def test_loss_decreases_on_a_fixed_batch(tiny_setup):
  _, batch, one = tiny_setup
  _, losses = one.losses(batch, 30)
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_non_finite_step_is_skipped(tiny_setup):
  _, batch, one = tiny_setup
  bad = dict(batch, source=batch["source"].copy())
  bad["source"][0, 0, 0, 0] = np.nan
  state = one.init(one.batch(batch))
  before = jax.device_get(state.params)
  new_state, metrics = one.step(state, one.batch(bad))
  assert not np.isfinite(float(metrics["loss"]))
  assert int(new_state.skipped_steps) == 1 and int(new_state.step) == 1
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(new_state.params), before)
  new_state, metrics = one.step(new_state, one.batch(batch))
  assert np.isfinite(float(metrics["loss"])) and int(new_state.skipped_steps) == 1


def _train_cmd(workdir: pathlib.Path, data_root: pathlib.Path, steps: int) -> list[str]:
  return [sys.executable, "-m", "talkingmem.main", "--config=configs/mcnet.py:tiny",
          f"--workdir={workdir}", f"--config.data.root={data_root}", f"--config.train.num_steps={steps}",
          "--config.train.log_every=1", "--config.train.checkpoint_every=2",
          "--config.train.eval_every=0", "--config.train.image_every=0",
          "--config.train.final_outputs=False", "--config.train.async_checkpoints=True"]


def _losses(workdir: pathlib.Path) -> dict[int, float]:
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_kill_and_resume_continues_with_the_same_losses(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  data = tmp_path / "data"
  steps = 6
  reference = tmp_path / "reference"
  subprocess.run(_train_cmd(reference, data, steps), cwd=REPO, env=env, check=True, timeout=900,
                 capture_output=True)
  expected = _losses(reference)
  assert sorted(expected) == list(range(1, steps + 1))

  interrupted = tmp_path / "interrupted"
  proc = subprocess.Popen(_train_cmd(interrupted, data, steps), cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None:
    if (interrupted / "metrics.jsonl").exists() and max(_losses(interrupted), default=0) >= 3:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)  # no chance to save: resume must use the last complete checkpoint
  proc.wait()
  done = max(_losses(interrupted))
  assert done < steps, "the run finished before it could be killed"
  subprocess.run(_train_cmd(interrupted, data, steps), cwd=REPO, env=env, check=True, timeout=900,
                 capture_output=True)
  resumed = _losses(interrupted)  # later lines overwrite the steps repeated after the restart
  assert sorted(resumed) == list(range(1, steps + 1))
  for s in range(1, steps + 1):
    np.testing.assert_allclose(resumed[s], expected[s], rtol=1e-6, err_msg=f"step {s}")


def test_optional_gan_separates_generator_and_discriminator_gradients(tmp_path):
  config = _config(tmp_path)
  config.loss.generator_gan = 1.0
  config.loss.equivariance_value = config.loss.equivariance_jacobian = 0.0  # smaller program
  task = get_task(config)
  batch = {k: jnp.asarray(v[:2]) for k, v in _smooth_batch(2, config.model.image_size, 3).items()}
  variables = jax.jit(task.init_variables)(jax.random.PRNGKey(0), batch)
  params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  assert set(params) == {"kp_detector", "generator", "discriminator"}

  def terms(p):
    _, (m, _) = task.loss(p, state, batch, jax.random.PRNGKey(1), 0)
    return jnp.stack([m["loss/discriminator_gan"], m["loss/generator_gan"] + m["loss/feature_matching"]])

  norm = lambda t, i: float(jnp.sqrt(sum(jnp.sum(x[i] ** 2) for x in jax.tree_util.tree_leaves(t))))  # noqa: E731
  grads = jax.jit(jax.jacrev(terms))(params)  # both terms' gradients, stacked, in one program
  assert norm(grads["discriminator"], 0) > 0 and norm(grads["generator"], 0) == 0
  assert norm(grads["generator"], 1) > 0 and norm(grads["discriminator"], 1) == 0


def test_bfloat16_training_step_lowers(tmp_path):
  """Mixed precision: the whole loss and its gradient lower in bf16 (e.g. no bf16 LAPACK calls)."""
  config = _config(tmp_path)
  config.train.compute_dtype = "bfloat16"
  task = get_task(config)
  batch = {k: jnp.asarray(v[:2]) for k, v in _smooth_batch(2, config.model.image_size, 5).items()}
  variables = jax.eval_shape(task.init_variables, jax.random.PRNGKey(0), batch)
  params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  grad = jax.jit(jax.grad(lambda p, s, b: task.loss(p, s, b, jax.random.PRNGKey(1), 0)[0]))
  lowered = grad.lower(params, state, batch)
  assert "bf16" in lowered.as_text()


def test_sigterm_saves_a_checkpoint_and_stops(tmp_path, monkeypatch):
  """A SIGTERM mid-run (e.g. a TPU preemption notice) ends the run after the current step with a
  checkpoint of that step, although checkpoint_every would not save until step 1000."""
  config = _config(tmp_path)
  config.loss.equivariance_value = config.loss.equivariance_jacobian = 0.0  # smaller program
  config.train.update(num_steps=20, checkpoint_every=1000, log_every=1, eval_every=0, image_every=0,
                      video_every=0, final_outputs=False)
  calls = []
  real_global_batch = sharding.global_batch

  def global_batch_then_sigterm(batch, mesh):
    calls.append(1)
    if len(calls) == 3:  # (init's batch, steps 1, 2) The handler only sets a flag; the step finishes.
      os.kill(os.getpid(), signal.SIGTERM)
    return real_global_batch(batch, mesh)

  monkeypatch.setattr(sharding, "global_batch", global_batch_then_sigterm)
  previous_handler = signal.getsignal(signal.SIGTERM)
  workdir = tmp_path / "run"
  train.train_and_evaluate(config, str(workdir))
  assert signal.getsignal(signal.SIGTERM) is previous_handler  # restored after the run
  last_step = max(_losses(workdir))
  assert 1 <= last_step <= 3
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [last_step]


def test_held_out_evaluation_reports_the_disoccluded_region(tiny_setup):
  """The synthetic set's ground-truth masks reach the training-time evaluation: L1 / PSNR inside the
  disoccluded pixels for the prediction, the deformed source and the still source."""
  task, batch, one = tiny_setup
  state = one.init(one.batch(batch))
  metrics = task.mean_eval_metrics({"params": state.params, **state.model_state}, task.eval_batches(0, 1))
  for name in ("l1_disoccluded", "psnr_disoccluded", "l1_deformed_source_disoccluded",
               "l1_source_disoccluded"):
    assert np.isfinite(metrics[name]), (name, metrics)
  assert 0 < metrics["l1_disoccluded"] < 1 and metrics["num_frames"] > 0
