"""MemFace's neural renderer and its trainer task: variants, sharding invariance, the data path."""
import functools
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines import video_io

from data_pipelines.speech import layout as speech_layout
from data_pipelines.synthetic.engine import appearance
from data_pipelines.synthetic.engine import face_model as fm
from data_pipelines.synthetic.engine import renderer as renderer_lib
from data_pipelines.synthetic.engine import scene as scene_lib
from talkingmem import sharding, train
from talkingmem.memface import renderer
from talkingmem.memface.renderer_task import RendererTask, box_mask, masked_l1
from talkingmem.task import get_task

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "configs"))
import memface_renderer as configs  # noqa: E402

SIZE = 32
FRAMES = 10


def _memory(rng, n, key_dim, patch):
  return {"keys": rng.normal(size=(n, key_dim)).astype(np.float32),
          "values": rng.uniform(size=(n, patch, patch, 3)).astype(np.float32),
          "frame_ids": np.arange(n), "valid": np.ones(n, bool),
          "key_mean": np.zeros(key_dim, np.float32), "key_scale": np.float32(1.0)}


def _batch(rng, n, key_dim):
  image = lambda: rng.uniform(size=(n, SIZE, SIZE, 3)).astype(np.float32)  # noqa: E731
  return {"rendered": image(), "masked": image(), "target": image(),
          "mask": np.ones((n, SIZE, SIZE, 1), np.float32),
          "mouth_vertices": rng.normal(size=(n, key_dim)).astype(np.float32),
          "mouth_box": np.tile(np.array([[8, 8, 16, 16]], np.int32), (n, 1)),
          "speaker": (np.arange(n) % 2).astype(np.int32),
          "frame": np.arange(n, dtype=np.int32) - 1}


def test_variants_and_box_metrics():
  c = configs.get_config("tiny").model
  rng = np.random.default_rng(0)
  batch = jax.tree.map(jnp.asarray, _batch(rng, 2, 15))
  memory = jax.tree.map(jnp.asarray, _memory(rng, int(c.memory_size), 15, int(c.patch_size)))
  sizes = {}
  for kind in renderer.MEMORY_KINDS:  # Shapes only (the training tests run the model).
    c.memory = kind
    model = renderer.NeuralRenderer(c)
    args = (batch["rendered"], batch["masked"], batch["mouth_vertices"], memory)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), *args)
    apply = functools.partial(model.apply, return_weights=True)
    out, weights = jax.eval_shape(apply, variables, *args)
    assert out.shape == (2, SIZE, SIZE, 3)
    assert (weights is None) == (kind == "none")
    sizes[kind] = sum(x.size for x in jax.tree.leaves(variables))
  assert sizes["none"] < sizes["explicit"] < sizes["implicit"]  # Implicit adds learned slots.
  with pytest.raises(ValueError, match="divisible by 2"):
    jax.eval_shape(model.apply, variables, jnp.zeros((1, 36, 36, 3)), jnp.zeros((1, 36, 36, 3)),
                   batch["mouth_vertices"][:1], memory)
  # Mouth-box L1 against a NumPy crop.
  a, b = np.asarray(batch["rendered"]), np.asarray(batch["target"])
  got = masked_l1(batch["rendered"], batch["target"], box_mask(batch["mouth_box"], SIZE, SIZE))
  np.testing.assert_allclose(got, np.abs(a - b)[:, 8:16, 8:16].mean((1, 2, 3)), rtol=1e-5)


def _losses(task, state, batch, num_devices: int, steps: int = 2):
  """Train steps from `state` with the batch sharded over num_devices."""
  tx, schedule = task.optimizer(100)
  mesh = sharding.make_mesh(num_devices)
  state = jax.device_put(state, sharding.replicated(mesh))
  step = jax.jit(train.make_train_step(task, tx, schedule, jax.random.PRNGKey(1)))
  gbatch = sharding.global_batch(batch, mesh)
  out = []
  for _ in range(steps):
    state, metrics = step(state, gbatch)
    out.append({k: float(v) for k, v in metrics.items() if np.ndim(v) == 0})
  return out


def test_training_step_same_loss_on_1_and_8_devices():
  """Explicit memories of two speakers, leave-one-out reads and the PatchGAN, 8 frames."""
  assert jax.device_count() == 8, "tests/conftest.py simulates 8 CPU devices"
  config = configs.get_config("tiny")
  task = get_task(config)
  assert isinstance(task, RendererTask) and task.use_gan
  rng = np.random.default_rng(1)
  m = config.model
  task.use_memories({s: _memory(rng, int(m.memory_size), 15, int(m.patch_size))
                     for s in ("a", "b")})
  batch = _batch(rng, 8, 15)
  batch["mouth_vertices"][2] = task.memories()["a"]["keys"][1]  # A key of its own frame ...
  batch["frame"][2] = 1  # ... which leave-one-out must not read.
  tx, _ = task.optimizer(100)
  state = jax.jit(lambda b: train.create_train_state(task, tx, jax.random.PRNGKey(0), b))(
      jax.tree.map(jnp.asarray, batch))
  assert set(state.params) == {"renderer", "discriminator"}
  np.testing.assert_array_equal(state.model_state["explicit_memory"]["keys"][0],
                                task.memories()["a"]["keys"])
  # pylint: disable-next=protected-access
  exclude = task._exclude(state.model_state, jax.tree.map(jnp.asarray, batch))
  assert bool(exclude[2, 0, 1]) and not bool(exclude[2, 1].any()) and not bool(exclude[0].any())
  losses1 = _losses(task, state, batch, 1)
  losses8 = _losses(task, state, batch, 8)
  for key in ("loss", "loss/l1", "loss/generator_gan", "loss/discriminator_gan"):
    np.testing.assert_allclose([x[key] for x in losses1], [x[key] for x in losses8], rtol=2e-5)
  assert losses1[1]["loss/l1"] < losses1[0]["loss/l1"]


def _write_rendered_dataset(root: pathlib.Path) -> None:
  """2 speakers x 2 clips x FRAMES frames rendered by the synthetic renderer (silent audio)."""
  model = fm.build_face_model()
  model.save(root / speech_layout.FACE_MODEL)
  for s in range(2):
    rng = np.random.default_rng(s)
    ident = renderer_lib.Identity(rng.normal(0, 1, model.n_id).astype(np.float32),
                                  appearance.sample_appearance(rng))
    face = renderer_lib.FaceRenderer(model, ident, scene_lib.sample_scene(rng), SIZE)
    for c in range(2):
      exp = np.zeros((FRAMES, model.n_exp), np.float32)
      exp[:, model.exp_index("jaw_open")] = rng.uniform(0, 1, FRAMES)
      pose = np.tile([0.0, 0.0, 0.0, 0.0, 0.0, 1.0], (FRAMES, 1)).astype(np.float32)
      pose[:, 0] = rng.uniform(-0.2, 0.2, FRAMES)
      folder = root / f"spk{s}" / f"clip{c}"
      speech_layout.write_clip(folder, np.zeros(FRAMES * 640, np.float32), exp, ident.id_coeffs,
                               pose=pose, exp_names=model.exp_names)
      video_io.write_video(folder / "frames", np.stack([face.render(p, e).image
                                                        for p, e in zip(pose, exp)]))


def test_training_run_on_rendered_frames_writes_the_outputs(tmp_path):
  _write_rendered_dataset(tmp_path)
  config = configs.get_config("tiny")
  config.data.update(root=str(tmp_path), test_fraction=0.5, eval_stride=1)
  config.data.synthetic = None
  config.train.update(num_steps=2, eval_every=2, image_every=2, video_every=100,
                      checkpoint_every=100)
  task = get_task(config)
  store = task.store
  assert store.speakers == ["spk0", "spk1"] and store.train_frames == {"spk0": 10, "spk1": 10}
  train_entry = store.splits["train"][1]
  example = store.example(train_entry, 3)
  assert example["rendered"].shape == (SIZE, SIZE, 3) and example["mouth_vertices"].shape == (
      3 * len(store.face_model.mouth_vertex_ids),)
  assert int(example["speaker"]) == 1 and int(example["frame"]) == 3
  assert int(store.example(store.splits["test"][0], 0)["frame"]) == -1
  memories = task.memories()
  spk1 = memories["spk1"]
  frames = store.speaker_training_frames("spk1")
  np.testing.assert_array_equal(spk1["keys"], frames["mouth_vertices"][spk1["frame_ids"]])
  assert spk1["valid"].sum() == 8  # N = 8 of 10 training frames.

  train.train_and_evaluate(config, str(tmp_path / "work"))
  summary = json.loads((tmp_path / "work" / "eval_summary.json").read_text())
  assert summary["test"]["num_frames"] == 20
  assert {"l1", "psnr", "ssim", "l1_mouth"} <= set(summary["test"])
  assert (tmp_path / "work" / "renderer.mp4").stat().st_size > 0
  assert (tmp_path / "work" / "explicit_memory" / "spk0.npz").exists()


def test_lpips_is_evaluated_when_weights_are_given(tmp_path):
  """config.eval.lpips_backbone adds per-example LPIPS equal to the standalone metric's."""
  from talkingmem.metrics import lpips  # pylint: disable=g-import-not-at-top
  from lpips_weights import torchvision_state_dict  # Random weights in torchvision layout.
  np.savez(tmp_path / "alex.npz", **torchvision_state_dict("alex"))
  config = configs.get_config("tiny")
  config.model.memory = "none"  # No memory: no data store needed for init.
  assert get_task(config).lpips_variables is None  # Off by default.
  config.eval.lpips_backbone = str(tmp_path / "alex.npz")
  task = get_task(config)
  batch = jax.tree.map(jnp.asarray, _batch(np.random.default_rng(0), 2, 15))
  variables = task.init_variables(jax.random.PRNGKey(0), batch)
  metrics = task.eval_metrics(variables, batch)
  pred = task.render(variables["params"]["renderer"], {}, batch)
  want = lpips.LPIPSMetric.from_files("alex", tmp_path / "alex.npz")(pred, batch["target"])
  assert metrics["lpips"].shape == (2,)
  np.testing.assert_allclose(metrics["lpips"], want, rtol=1e-5)
