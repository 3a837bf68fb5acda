"""MemFace stage-1 task: learning, alternating updates, metrics, ablations, end-to-end training."""
import importlib.util
import json
import pathlib

import jax
import numpy as np
import pytest

from data_pipelines.speech import layout as speech_layout
from data_pipelines.synthetic import speech_audio as speech
from talkingmem import train
from talkingmem.memface import tasks
from talkingmem.task import get_task
from synthetic_speech import make_toy_dataset  # pylint: disable=g-bad-import-order

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS, ALTERNATE_UNTIL = 40, 20


def get_config(arg):
  spec = importlib.util.spec_from_file_location("memface_a2e_config",
                                                REPO / "configs" / "memface_a2e.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _toy_config(root, memory="implicit"):
  config = get_config("tiny")
  config.data.update(root=str(root), read_threads=0,
                     exp_components=("jaw_open", "lip_round", "lip_stretch"))
  config.data.synthetic = None
  config.model.memory = memory
  config.optim.update(learning_rate=3e-3, schedule="constant", alternate_fraction=0.5)
  return config


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
  return make_toy_dataset(tmp_path_factory.mktemp("toy_a2e"))


@pytest.fixture(scope="module")
def run(toy_root):
  """STEPS optimizer steps of the trainer's step function on one fixed batch, params recorded."""
  task = get_task(_toy_config(toy_root))
  batch = next(iter(task.train_data(0, 1)))
  tx, schedule = task.optimizer(STEPS)
  state = jax.jit(lambda r, b: train.create_train_state(task, tx, r, b))(jax.random.key(0), batch)
  step = jax.jit(train.make_train_step(task, tx, schedule, jax.random.key(1)))
  history, params = [], [jax.device_get(state.params)]
  for _ in range(STEPS):
    state, metrics = step(state, batch)
    history.append(float(metrics["loss"]))
    params.append(jax.device_get(state.params))
  return task, batch, state, history, params, metrics


def test_loss_decreases_on_a_fixed_batch(run):
  _, _, state, history, _, metrics = run
  assert np.isfinite(history).all()
  assert history[-1] < 0.5 * history[0], history
  assert int(state.skipped_steps) == 0
  assert {"loss/exp", "loss/vertex", "loss/reg", "memory/attention_entropy"} <= set(metrics)


def _changed(before, after):
  flat = [jax.tree_util.tree_flatten_with_path(p)[0] for p in (before, after)]
  return {path: not np.array_equal(a, b) for (path, a), (_, b) in zip(*flat)}


def test_alternating_updates_alternate_then_stop(run):
  params = run[4]
  for i in range(STEPS):
    changed = _changed(params[i], params[i + 1])
    memory = [c for p, c in changed.items() if "memory" in jax.tree_util.keystr(p)]
    model = [c for p, c in changed.items() if "memory" not in jax.tree_util.keystr(p)]
    assert len(memory) == 2 and model
    if i < ALTERNATE_UNTIL and i % 2 == 0:  # Model step: the memory is untouched.
      assert not any(memory) and any(model), i
    elif i < ALTERNATE_UNTIL:  # Memory step: the rest of the model is untouched.
      assert all(memory) and not any(model), i
    else:
      assert all(memory) and any(model), i


def test_eval_metrics_are_mouth_vertex_rmse(run):
  task, _, state, *_ = run
  variables = {"params": state.params, **state.model_state}
  batch = next(task.eval_batches(0, 1))
  numeric = {k: v for k, v in batch.items() if np.asarray(v).dtype.kind in "biuf"}
  metrics = jax.device_get(jax.jit(task.eval_metrics)(variables, numeric))
  assert set(metrics) == {"coeff_l2", "vertex_mse", "vertex_rmse", "valid"}
  pred = np.asarray(jax.jit(task.model.apply)(variables, batch["audio"], batch["mask"])["coeffs"])
  store, face = task.store, task.store.face_model
  clips = store.splits["test"]
  for i in np.flatnonzero(batch["valid"]):
    clip, frames = clips[batch["clip"][i]], np.flatnonzero(batch["mask"][i])
    exp_all = store.arrays(clip)["exp_all"][batch["start"][i] + frames].copy()
    exp_all[:, store.exp_index] = pred[i, frames]
    vertices = face.vertices(batch["id"][i], exp_all)[:, face.mouth_vertex_ids]
    truth = np.load(clip.path / speech_layout.MOUTH_VERTICES)[batch["start"][i] + frames]
    rmse = np.sqrt(np.mean(np.sum((vertices - truth) ** 2, -1)))
    np.testing.assert_allclose(metrics["vertex_rmse"][i], rmse, rtol=1e-4)
    coeff = np.mean((pred[i, frames] - batch["exp"][i, frames]) ** 2)
    np.testing.assert_allclose(metrics["coeff_l2"][i], coeff, rtol=1e-4)
  summary = jax.jit(task.summaries)(variables, numeric)
  (image,) = summary.values()
  assert image.ndim == 4 and image.shape[-1] == 3


def test_explicit_memory_and_no_memory_ablations(toy_root):
  for memory in ("explicit", "none"):
    task = get_task(_toy_config(toy_root, memory))
    batch = next(iter(task.train_data(0, 1)))
    variables = jax.eval_shape(task.init_variables, jax.random.key(0), batch)  # No compile.
    if memory == "explicit":
      assert variables["memory"]["memory"]["keys"].shape == (32, 16 * 80)
      chosen = task._explicit_memory()  # pylint: disable=protected-access
      assert chosen["keys"].shape == (32, 16 * 80) and chosen["values"].shape == (32, 3)
      assert len(np.unique(chosen["values"], axis=0)) > 16  # Dissimilar mouth shapes.
    else:
      assert "memory" not in variables["params"]
    params, state = variables.pop("params"), variables
    loss, (metrics, _) = jax.eval_shape(task.loss, params, state, batch, jax.random.key(1), 0)
    assert loss.shape == () and "loss/reg" in metrics


def test_config_variants_and_renderer_task():
  paper = get_config(None)
  assert paper.model.memory == "implicit"
  assert (paper.model.memory_slots, paper.model.memory_dim) == (1000, 64)
  assert paper.optim.alternate and paper.optim.alternate_fraction == 0.5
  assert get_config("no_memory").model.memory == "none"
  assert get_config("explicit_memory").model.memory == "explicit"
  demo, ablated = get_config("demo"), get_config("demo,no_memory")
  assert ablated.model.memory == "none" and demo.data.to_dict() == ablated.data.to_dict()
  assert demo.train.num_steps == ablated.train.num_steps
  with pytest.raises(ValueError, match="unknown variant"):
    get_config("huge")
  from talkingmem.task import TASKS
  assert TASKS["memface_renderer"] == "talkingmem.memface.renderer_task:RendererTask"


def test_alternate_updates_freezes_optimizer_state_too():
  import optax
  tx = tasks.alternate_updates(optax.adam(0.1), phase=1, until=2)
  params = {"w": np.ones(3, np.float32)}
  state = tx.init(params)
  grads = {"w": np.ones(3, np.float32)}
  updates, state1 = tx.update(grads, state, params)  # count 0: inactive.
  assert float(np.abs(updates["w"]).sum()) == 0.0
  assert np.array_equal(jax.tree.leaves(state1.inner)[1], jax.tree.leaves(state.inner)[1])
  updates, _ = tx.update(grads, state1, params)  # count 1: active.
  assert float(np.abs(updates["w"]).sum()) > 0.0


@pytest.mark.skipif(not speech.is_available(), reason="libespeak-ng missing")
def test_train_and_evaluate_tiny_end_to_end(tmp_path):
  config = get_config("tiny")
  config.data.root = str(tmp_path / "speech_synth_tiny")  # Generated on first use.
  train.train_and_evaluate(config, str(tmp_path / "work"))
  summary = json.loads((tmp_path / "work" / "eval_a2e.json").read_text())
  assert summary["memory"] == "implicit" and summary["test"]["frames"] > 0
  assert np.isfinite(summary["test"]["vertex_rmse"]) and "test_random_memory" in summary
  assert summary["test_baseline_train_mean"]["frames"] == summary["test"]["frames"]
  lines = [json.loads(l) for l in (tmp_path / "work" / "metrics.jsonl").read_text().splitlines()]
  assert any("eval/vertex_rmse" in l for l in lines)
