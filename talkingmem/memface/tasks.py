"""MemFace as trainer tasks. Stage 1: audio-to-expression with the implicit memory (paper Sec. 3.2).

Loss (eq. 4): w_exp * L2(coefficients) + w_vertex * L2(mouth vertices) + w_reg * L_reg(memory), on
valid frames. Mouth vertices come from the coefficients through the dataset's linear 3DMM
(`face_model.npz`); by linearity the vertex error of a prediction is (pred - gt) . exp_basis on the
mouth vertices, whatever the identity, which is what the metrics report.

Alternating updates (supplement B.2: "update model parameters and memory alternately in the first
half of the training"): with `optim.alternate`, optax.multi_transform splits the parameters by
`memory_param_labels`; during the first `optim.alternate_fraction` of the steps the model group is
updated on even steps and the memory on odd steps, the other group's update and optimizer state left
untouched; afterwards both update every step.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from data_pipelines.speech import pipelines as speech_pipelines
from data_pipelines.synthetic import speech_set
from talkingmem.memface import a2e
from talkingmem.memface import losses
from talkingmem.memface import memory as memory_lib
from talkingmem.synthetic_data import ensure_synthetic
from talkingmem.task import Task


def ensure_synthetic_speech(data_config) -> None:
  """Generates the synthetic speech set into data.root the first time it is needed."""
  synth = data_config.get("synthetic")
  if synth is None:
    return
  seed = int(data_config.get("synthetic_seed", 0))
  wanted = {k: v for k, v in synth.to_dict().items() if k != "size" or synth.get("render")}
  ensure_synthetic(data_config.root, dict(wanted, seed=seed),
                   lambda root: speech_set.generate_speech_dataset(root, seed=seed, **synth.to_dict()),
                   "speech dataset")


# --------------------------------------------------------------------------------------------------
# Alternating updates.


class AlternateState(NamedTuple):
  count: jax.Array
  inner: Any


def alternate_updates(inner: optax.GradientTransformation, phase: int, until: int
                      ) -> optax.GradientTransformation:
  """`inner` applied only on steps with count % 2 == phase while count < until, always after.

  On inactive steps the update is zero and `inner`'s state is unchanged (no moment decay), so the
  parameters it owns are exactly frozen. `count` counts this transformation's updates.
  """

  def init_fn(params):
    return AlternateState(jnp.zeros((), jnp.int32), inner.init(params))

  def update_fn(updates, state, params=None):
    active = (state.count >= until) | (state.count % 2 == phase)
    new_updates, new_inner = inner.update(updates, state.inner, params)

    def pick(new, old):
      return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, old)

    new_updates = jax.tree.map(lambda u: jnp.where(active, u, jnp.zeros_like(u)), new_updates)
    return new_updates, AlternateState(state.count + 1, pick(new_inner, state.inner))

  return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------------------------------
# Stage 1.


class AudioToExpressionTask(Task):
  """Audio windows -> mouth-related expression coefficients; implicit / explicit / no memory."""

  def __init__(self, config):
    super().__init__(config)
    self._store = None
    self._model = None
    self._mouth = None
    self._explicit = None

  # -- data ------------------------------------------------------------------------------------
  @property
  def store(self) -> speech_pipelines.SpeechStore:
    if self._store is None:
      ensure_synthetic_speech(self.config.data)
      with jax.ensure_compile_time_eval():  # Feature statistics, even if first used in a trace.
        self._store = speech_pipelines.open_store(self.config.data)
    return self._store

  def train_data(self, process_index: int, process_count: int):
    return speech_pipelines.train_dataset(self.config.data, store=self.store,
                                          process_index=process_index, process_count=process_count)

  def eval_batches(self, process_index: int, process_count: int, split: str | None = None
                   ) -> Iterator[dict]:
    yield from speech_pipelines.eval_dataset(self.config.data, store=self.store, split=split,
                                             process_index=process_index,
                                             process_count=process_count)

  def steps_per_epoch(self) -> int:
    source = speech_pipelines.TrainWindowSource(self.store)
    return max(1, len(source) // int(self.config.data.batch_size))

  # -- model -----------------------------------------------------------------------------------
  @property
  def model(self) -> a2e.AudioToExpression:
    if self._model is None:
      m = self.config.model.to_dict()
      m["conv_features"] = tuple(m.get("conv_features", (32, 32, 64, 64)))
      self._model = a2e.AudioToExpression(num_coeffs=len(self.store.exp_index), **m)
    return self._model

  @property
  def mouth_model(self) -> losses.MouthModel | None:
    """The 3DMM restricted to mouth vertices and the predicted components (None without one)."""
    face = self.store.face_model
    if self._mouth is None and face is not None:
      index, mouth = self.store.exp_index, face.mouth_vertex_ids
      # NumPy leaves: built once, possibly inside a trace, and used as constants by every jit.
      self._mouth = losses.MouthModel(face.mean[mouth], face.id_basis[:, mouth],
                                      face.exp_basis[index][:, mouth])
    return self._mouth

  def _explicit_memory(self) -> dict[str, np.ndarray]:
    """The 'w/ expl. mem.' ablation: training frames most dissimilar in mouth shape (cached)."""
    if self._explicit is None:
      with jax.ensure_compile_time_eval():  # Host data work, also when called inside init's trace.
        self._explicit = self._build_explicit_memory()
    return self._explicit

  def _build_explicit_memory(self) -> dict[str, np.ndarray]:
    cfg = self.config.model
    source = speech_pipelines.TrainWindowSource(self.store)
    max_frames = int(self.config.get("explicit_memory_frames", 20000))
    stride = max(1, -(-sum(c.length for c in source.clips) // max_frames))
    feats, coeffs, shape = [], [], []
    for clip in source.clips:  # Every stride-th training frame, across all speakers.
      w = self.store.window(clip, clip.start, clip.length)
      feats.append(w["audio"][::stride])
      coeffs.append(w["exp"][::stride])
      shape.append(w["mouth_vertices"][::stride].reshape(len(coeffs[-1]), -1)
                   if "mouth_vertices" in w else coeffs[-1])
    return memory_lib.build_explicit_memory(
        np.concatenate(feats), np.concatenate(coeffs), int(cfg.memory_slots),
        select_by=np.concatenate(shape))

  def init_variables(self, rng, batch):
    variables = self.model.init({"params": rng, "dropout": rng}, batch["audio"][:1],
                                batch["mask"][:1])
    variables = dict(variables)
    if self.model.memory == "explicit":
      variables = memory_lib.fill_explicit_memory(variables, self._explicit_memory())
    return variables

  def optimizer(self, total_steps: int):
    o = self.config.optim
    schedule = _schedule(o, total_steps)

    def base():
      parts = [optax.clip_by_global_norm(o.clip_norm)] if o.get("clip_norm") else []
      return optax.chain(*parts, optax.adam(schedule, b1=o.b1, b2=o.b2))

    if self.model.memory != "implicit" or not o.get("alternate", False):
      return base(), schedule
    until = int(total_steps * o.get("alternate_fraction", 0.5))
    tx = optax.multi_transform({"model": alternate_updates(base(), 0, until),
                                "memory": alternate_updates(base(), 1, until)},
                               memory_lib.memory_param_labels)
    return tx, schedule

  def loss(self, params, model_state, batch, rng, step):
    del step
    c = self.config.loss
    out = self.model.apply({"params": params, **model_state}, batch["audio"], batch["mask"], train=True,
                           rngs={"dropout": rng})
    total, terms = losses.a2e_loss(
        out["coeffs"], batch["exp"], params, id_coeffs=batch["id"][:, None], model=self.mouth_model,
        mask=batch["mask"], w_exp=c.w_exp, w_vertex=c.w_vertex, w_reg=c.w_reg)
    metrics = {f"loss/{k}": v for k, v in terms.items()}
    if "memory_weights" in out:
      metrics["memory/attention_entropy"] = _masked_entropy(out["memory_weights"], batch["mask"])
    return total, (metrics, model_state)

  # -- evaluation ------------------------------------------------------------------------------
  def _errors(self, variables, batch) -> dict[str, jax.Array]:
    """Per-example sums over valid frames: squared coefficient / vertex errors and frame counts."""
    pred = self.model.apply(variables, batch["audio"], batch["mask"])["coeffs"]
    mask = batch["mask"].astype(jnp.float32)
    diff = pred - batch["exp"]
    out = {"frames": mask.sum(1), "coeff_sq": jnp.sum(jnp.mean(diff ** 2, -1) * mask, 1)}
    if self.mouth_model is not None:
      dv = jnp.einsum("btk,kvc->btvc", diff, self.mouth_model.exp_basis)
      out["vertex_sq"] = jnp.sum(jnp.mean(jnp.sum(dv ** 2, -1), -1) * mask, 1)
    return out

  def eval_metrics(self, variables, batch):
    e = self._errors(variables, batch)
    frames = jnp.maximum(e["frames"], 1.0)
    out = {"coeff_l2": e["coeff_sq"] / frames}
    if "vertex_sq" in e:
      out["vertex_mse"] = e["vertex_sq"] / frames
      out["vertex_rmse"] = jnp.sqrt(out["vertex_mse"])
    out["valid"] = batch.get("valid", jnp.ones(frames.shape, bool))
    return out

  def summaries(self, variables, batch):
    """Coefficient tracks of up to 4 windows: ground truth | prediction | |error| (rows: coeffs)."""
    return self.jitted("summaries", self._summaries)(variables, batch)

  def _summaries(self, variables, batch):
    n = min(4, batch["audio"].shape[0])
    pred = self.model.apply(variables, batch["audio"][:n], batch["mask"][:n])["coeffs"]
    gt = batch["exp"][:n]
    rows = [jnp.swapaxes(x, 1, 2) for x in (gt, pred, jnp.abs(pred - gt))]  # (n, C, T)
    gap = jnp.full(rows[0].shape[:1] + (1,) + rows[0].shape[2:], 1.0)
    image = jnp.concatenate([rows[0], gap, rows[1], gap, rows[2]], axis=1)
    image = jnp.repeat(jnp.repeat(jnp.clip(image, 0.0, 1.0), 4, 1), 4, 2)
    return {"exp gt|pred|error (rows: coefficients, columns: frames)":
            jnp.repeat(image[..., None], 3, -1)}

  def evaluate_split(self, variables, split: str, batches: int | None = None) -> dict[str, float]:
    """Frame-weighted errors over a whole split (this process's share)."""
    errors = self.jitted("errors", self._errors)
    sums: dict[str, float] = {}
    for i, batch in enumerate(self.eval_batches(jax.process_index(), jax.process_count(), split)):
      if batches is not None and i >= batches:
        break
      numeric = {k: jnp.asarray(v) for k, v in batch.items() if np.asarray(v).dtype.kind in "biuf"}
      for k, v in jax.device_get(errors(variables, numeric)).items():
        sums[k] = sums.get(k, 0.0) + float(np.sum(np.asarray(v, np.float64)))
    frames = max(sums.pop("frames", 0.0), 1.0)
    out = {"frames": int(frames), "coeff_l2": sums["coeff_sq"] / frames}
    if "vertex_sq" in sums:
      out["vertex_rmse"] = float(np.sqrt(sums["vertex_sq"] / frames))
    return out

  def constant_baseline(self, split: str) -> dict[str, float]:
    """Errors of predicting the training-set mean coefficients for every frame (the audio-blind
    reference the model's RMSE should be read against)."""
    def frames(name):
      return [self.store.arrays(c)["exp"][c.start:c.end] for c in self.store.splits[name]]
    mean = np.concatenate(frames(self.config.data.get("train_split", "train"))).mean(0)
    diff = np.concatenate(frames(split)) - mean
    dv = np.einsum("tk,kvc->tvc", diff, np.asarray(self.mouth_model.exp_basis))
    return {"frames": len(diff), "coeff_l2": float(np.mean(diff ** 2)),
            "vertex_rmse": float(np.sqrt(np.mean(np.sum(dv ** 2, -1))))}

  def after_training(self, variables, workdir):
    """Writes eval_a2e.json: held-out errors (all / seen / unseen speakers), a train-mean baseline,
    and with an implicit memory the supplement's toy check (C.3): the same model with its keys and
    values reset to N(0, 1)."""
    variables = jax.device_get(variables)
    summary: dict[str, Any] = {"memory": self.model.memory,
                               "components": list(self.store.selected_names or
                                                  self.store.exp_index.tolist())}
    for split in ("test", "test_seen", "test_unseen"):
      if self.store.splits.get(split):
        summary[split] = self.evaluate_split(variables, split)
    if self.model.memory == "implicit":
      params = jax.tree.map(np.asarray, variables["params"])
      rng = np.random.default_rng(0)
      for key in ("keys", "values"):
        params["memory"][key] = rng.standard_normal(params["memory"][key].shape).astype(np.float32)
      summary["test_random_memory"] = self.evaluate_split({**variables, "params": params}, "test")
    if self.mouth_model is not None:
      summary["test_baseline_train_mean"] = self.constant_baseline("test")
    summary["num_params"] = int(sum(np.size(x) for x in jax.tree.leaves(variables["params"])))
    if jax.process_index() == 0:
      path = pathlib.Path(workdir) / "eval_a2e.json"
      path.write_text(json.dumps(summary, indent=1) + "\n")
      summary["path"] = str(path)
    return summary


def _schedule(o, total_steps: int) -> optax.Schedule:
  """Constant or cosine-decayed learning rate, after an optional linear warm-up."""
  warmup = int(o.get("warmup_steps", 0))
  if o.get("schedule", "constant") == "cosine":
    main = optax.cosine_decay_schedule(o.learning_rate, max(total_steps - warmup, 1),
                                       alpha=o.get("final_lr_fraction", 0.0))
  else:
    main = optax.constant_schedule(o.learning_rate)
  if not warmup:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, o.learning_rate, warmup), main], [warmup])


def _masked_entropy(weights: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean entropy (nats) of the memory attention over valid frames: low = sharp slot choice."""
  entropy = -jnp.sum(weights * jnp.log(jnp.maximum(weights, 1e-12)), -1)
  m = mask.astype(entropy.dtype)
  return jnp.sum(entropy * m) / jnp.maximum(m.sum(), 1.0)
