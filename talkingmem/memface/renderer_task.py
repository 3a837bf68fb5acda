"""MemFace stage 2 as a trainer task: the neural renderer with the explicit memory (paper Sec. 3.3).

Data: frames of the speakers' videos with their 3DMM fits (data_pipelines/speech/renderer_pipelines.py).
Memory: one explicit memory per training speaker, built at the first use from the speaker's
training frames (greedy selection, data_pipelines/speech/explicit_memory.py) or loaded from
`config.explicit_memory.paths` ({speaker: .npz}); stacked over speakers in the 'explicit_memory'
variable collection (not trained, saved with the checkpoints, replaceable with `with_memories` for
a new speaker), and read with the batch's speaker index. Training reads leave-one-out: memory slots
taken from frames within `model.exclude_radius` frames of the example's own frame are masked, so the
renderer cannot learn to copy the target's own patch (it never can at test time). Speakers without
training frames get an empty memory (all slots invalid) unless a path is given.

Objective (eq. 6): w_l1 * L1 + VGG19 perceptual (MCNet's loader; without weights the documented
L1 + (1 - SSIM) pixel pyramid, announced at start) + an LSGAN conditional PatchGAN (one simultaneous
update of renderer and discriminator, separated by stop-gradients, as the MCNet task's GAN).
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Iterator, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from data_pipelines.speech import renderer_pipelines
from talkingmem import losses as image_losses
from data_pipelines.speech import explicit_memory as memory_lib
from talkingmem.memface.renderer import NeuralRenderer, PatchDiscriminator
from talkingmem.memface.tasks import ensure_synthetic_speech
from talkingmem.metrics import image as image_metrics
from talkingmem.nn import vgg
from talkingmem.task import Task

MEMORY = "explicit_memory"  # Variable collection of the stacked per-speaker memories.
STATS = "memory_stats"  # Implicit variant: the query standardisation (key_mean, key_scale).


def box_mask(boxes: jax.Array, height: int, width: int) -> jax.Array:
  """(B, 4) (y0, x0, y1, x1) -> (B, H, W, 1) float mask of the boxes (clipped to the image)."""
  ys = jnp.arange(height)[None, :, None]
  xs = jnp.arange(width)[None, None, :]
  b = boxes[:, :, None, None]
  inside = (ys >= b[:, 0]) & (ys < b[:, 2]) & (xs >= b[:, 1]) & (xs < b[:, 3])
  return inside[..., None].astype(jnp.float32)


def masked_l1(a: jax.Array, b: jax.Array, mask: jax.Array) -> jax.Array:
  """Per-image mean |a - b| over the pixels where mask (B, H, W, 1) is 1."""
  num = jnp.sum(jnp.abs(a - b) * mask, axis=(1, 2, 3))
  return num / jnp.maximum(jnp.sum(mask, axis=(1, 2, 3)) * a.shape[-1], 1.0)


class RendererTask(Task):
  """Frame reconstruction from the rendered face + masked frame, with a per-speaker memory."""

  def __init__(self, config):
    super().__init__(config)
    self.model = NeuralRenderer(config.model)
    self.use_gan = config.loss.get("gan", 0.0) > 0
    if self.use_gan:
      self.discriminator = PatchDiscriminator(**config.discriminator.to_dict())
    self._store = None
    self.lpips_variables = self._load_lpips(config.get("eval"))
    self._memories: dict[str, dict[str, np.ndarray]] | None = None
    self.vgg_params = vgg.perceptual_loss_params(config.loss)

  # -- data ------------------------------------------------------------------------------------
  @property
  def store(self) -> renderer_pipelines.RendererStore:
    if self._store is None:
      ensure_synthetic_speech(self.config.data)
      self._store = renderer_pipelines.RendererStore(self.config.data)
    return self._store

  def train_data(self, process_index: int, process_count: int):
    return renderer_pipelines.train_dataset(self.config.data, store=self.store,
                                            process_index=process_index,
                                            process_count=process_count)

  def eval_batches(self, process_index: int, process_count: int, split: str | None = None
                   ) -> Iterator[dict]:
    yield from renderer_pipelines.eval_dataset(self.config.data, store=self.store, split=split,
                                               process_index=process_index,
                                               process_count=process_count)

  def steps_per_epoch(self) -> int:
    frames = sum(self.store.train_frames.values())
    return max(1, frames // int(self.config.data.batch_size))

  # -- memories --------------------------------------------------------------------------------
  def memories(self) -> dict[str, dict[str, np.ndarray]]:
    """{speaker: memory} for every speaker of the store in `store.speakers` order (the batch's
    speaker index), built or loaded once."""
    if self._memories is None:
      with jax.ensure_compile_time_eval():  # Host work, also when first called inside a trace.
        self._memories = self._load_or_build()
    return self._memories

  def use_memories(self, memories: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Replaces the task's memories (e.g. a new speaker's, for adaptation) before init; their order
    is the speaker index of the batches (`store.speakers` for data from the store)."""
    m = self.config.model
    for speaker, memory in memories.items():
      memory_lib.check_memory(memory, f"memory of {speaker}", size=int(m.memory_size),
                              patch_size=int(m.patch_size))
    self._memories = {k: dict(v) for k, v in memories.items()}

  def _load_or_build(self) -> dict[str, dict[str, np.ndarray]]:
    m = self.config.model
    paths = dict(self.config.get("explicit_memory", {}).get("paths") or {})
    store = self.store
    out = {}
    for speaker, path in paths.items():
      out[speaker] = memory_lib.load_explicit_memory(path, size=int(m.memory_size),
                                                     key_dim=store.mouth_dim,
                                                     patch_size=int(m.patch_size))
      out[speaker].pop("meta", None)
    missing = [s for s in store.speakers if s not in out and store.train_frames.get(s)]
    if missing:
      logging.info("Building explicit memories (N=%d) for %d speakers", int(m.memory_size),
                   len(missing))
      sub = renderer_pipelines.build_speaker_memories(store, int(m.memory_size),
                                                      int(m.patch_size))
      out.update({s: sub[s] for s in missing})
    for speaker in store.speakers:
      if speaker not in out:  # No training frames and no file: an empty memory.
        out[speaker] = _empty_memory(int(m.memory_size), store.mouth_dim, int(m.patch_size))
    return {s: out[s] for s in store.speakers}  # The batch's speaker index follows this order.

  def memory_variables(self, speakers: list[str] | None = None) -> dict[str, Any]:
    """The model-state collection for the memory variant: stacked memories or query statistics."""
    if self.model.config.memory == "none":
      return {}
    memories = self.memories()
    speakers = speakers or list(memories)
    if self.model.config.memory == "explicit":
      return {MEMORY: memory_lib.stack_memories([memories[s] for s in speakers])}
    valid = [memories[s] for s in speakers if memories[s]["valid"].any()]
    keys = np.concatenate([m["keys"][m["valid"]] for m in valid])  # Implicit: query statistics.
    mean = keys.mean(0)
    return {STATS: {"key_mean": mean.astype(np.float32),
                    "key_scale": np.float32(np.sqrt(np.mean((keys - mean) ** 2)))}}

  def with_memories(self, variables: Mapping[str, Any], speakers: list[str] | None = None) -> dict:
    """`variables` with the memory collection replaced by the task's current memories."""
    out = {k: v for k, v in variables.items() if k not in (MEMORY, STATS)}
    return {**out, **jax.tree.map(jnp.asarray, self.memory_variables(speakers))}

  # -- model -----------------------------------------------------------------------------------
  def init_variables(self, rng, batch):
    model_rng, disc_rng = jax.random.split(fast_init_key(rng))
    state = jax.tree.map(jnp.asarray, self.memory_variables())
    memory = _memory_arg(state)
    params = self.model.init(model_rng, batch["rendered"][:1], batch["masked"][:1],
                             _query(batch)[:1], memory, speaker=batch["speaker"][:1])["params"]
    params = {"renderer": params}
    if self.use_gan:
      params["discriminator"] = self.discriminator.init(
          disc_rng, batch["target"][:1], batch["rendered"][:1], batch["masked"][:1])["params"]
    return {"params": params, **state}

  def optimizer(self, total_steps: int):
    o = self.config.optim
    schedule = optax.constant_schedule(o.learning_rate)
    if o.get("decay_at"):
      schedule = optax.piecewise_constant_schedule(
          o.learning_rate, {int(total_steps * at): o.lr_decay for at in o.decay_at})

    def adam():
      parts = [optax.clip_by_global_norm(o.clip_norm)] if o.get("clip_norm") else []
      return optax.chain(*parts, optax.adam(schedule, b1=o.b1, b2=o.b2))

    modules = ("renderer",) + (("discriminator",) if self.use_gan else ())
    def labels(params):
      return {k: jax.tree.map(lambda _, k=k: k, v) for k, v in params.items()}

    return optax.multi_transform({m: adam() for m in modules}, labels), schedule

  def _exclude(self, model_state, batch):
    """(B, S, N) leave-one-out mask: memory slots from frames near the example's own frame."""
    if MEMORY not in model_state or self.config.model.get("exclude_radius", 0) < 0:
      return None
    frame_ids = model_state[MEMORY]["frame_ids"]  # (S, N)
    frame = batch["frame"][:, None, None]
    own = jax.nn.one_hot(batch["speaker"], frame_ids.shape[0], dtype=bool)[:, :, None]
    near = jnp.abs(frame_ids[None] - frame) <= int(self.config.model.exclude_radius)
    return own & near & (frame >= 0)

  def render(self, params, model_state, batch, exclude=None, return_weights=False):
    return self.model.apply({"params": params}, batch["rendered"], batch["masked"], _query(batch),
                            _memory_arg(model_state), speaker=batch["speaker"], exclude=exclude,
                            return_weights=return_weights)

  def loss(self, params, model_state, batch, rng, step):
    del rng, step
    c = self.config.loss
    pred, weights = self.render(params["renderer"], model_state, batch,
                                self._exclude(model_state, batch), return_weights=True)
    target = batch["target"]
    terms = {"l1": c.l1 * jnp.mean(jnp.abs(pred - target))}
    if c.perceptual > 0:
      scales = tuple(c.scales)
      if self.vgg_params is not None:
        terms["perceptual"] = image_losses.perceptual_loss(self.vgg_params, pred, target, scales,
                                                           (c.perceptual,) * 5)
      else:
        terms["pixel_pyramid"] = image_losses.pixel_pyramid_loss(pred, target, scales,
                                                                 c.perceptual)
    if self.use_gan:
      terms.update(self._gan_terms(params["discriminator"], pred, batch))
    metrics = {f"loss/{k}": v for k, v in terms.items()}
    if weights is not None:
      w = weights.reshape(weights.shape[0], -1)
      metrics["memory/attention_entropy"] = jnp.mean(
          -jnp.sum(w * jnp.log(jnp.maximum(w, 1e-12)), -1))
    return sum(terms.values()), (metrics, model_state)

  def _gan_terms(self, d_params, pred, batch) -> dict:
    """LSGAN: the renderer's term sees a frozen discriminator, the discriminator's a frozen
    prediction (stop_gradient both ways), so one simultaneous update trains both."""
    from talkingmem.nn import discriminator as disc_lib
    c = self.config.loss
    cond = (batch["rendered"], batch["masked"])
    frozen = {"params": jax.lax.stop_gradient(d_params)}
    fake = self.discriminator.apply(frozen, pred, *cond)
    real_d = self.discriminator.apply({"params": d_params}, batch["target"], *cond)
    fake_d = self.discriminator.apply({"params": d_params}, jax.lax.stop_gradient(pred), *cond)
    return {"generator_gan": disc_lib.generator_gan_loss(fake, c.gan),
            "discriminator_gan": disc_lib.discriminator_gan_loss(real_d, fake_d, c.gan)}

  # -- evaluation ------------------------------------------------------------------------------
  @staticmethod
  def _load_lpips(eval_config) -> dict | None:
    """LPIPS weights when config.eval.lpips_backbone names them; otherwise said once, at start."""
    backbone = eval_config.get("lpips_backbone") if eval_config else None
    if not backbone:
      logging.info("LPIPS not evaluated: set config.eval.lpips_backbone to torchvision's "
                   "alexnet-owt-7be5be79.pth (or vgg16) to add it")
      return None
    from talkingmem.metrics import lpips  # pylint: disable=g-import-not-at-top
    return lpips.load_lpips_params(eval_config.get("lpips_net", "alex"), backbone,
                                   eval_config.get("lpips_heads") or None)

  def eval_metrics(self, variables, batch):
    state = {k: v for k, v in variables.items() if k != "params"}
    pred = self.render(variables["params"]["renderer"], state, batch)
    target = batch["target"]
    mouth = box_mask(batch["mouth_box"], *target.shape[1:3])
    return {"l1": image_metrics.l1(pred, target, reduce=False),
            "psnr": image_metrics.psnr(pred, target, reduce=False),
            "ssim": image_metrics.ssim(pred, target, reduce=False),
            "l1_mouth": masked_l1(pred, target, mouth),
            "l1_lower_face": masked_l1(pred, target, batch["mask"]),
            "l1_masked_input": image_metrics.l1(batch["masked"], target, reduce=False),
            "valid": batch.get("valid", jnp.ones(pred.shape[:1], bool))} | self._lpips(pred, target)

  def _lpips(self, pred, target) -> dict[str, jax.Array]:
    if self.lpips_variables is None:
      return {}
    from talkingmem.metrics.lpips import LPIPS  # pylint: disable=g-import-not-at-top
    net = self.config.eval.get("lpips_net", "alex")
    return {"lpips": LPIPS(net).apply(self.lpips_variables, pred, target)}

  def summaries(self, variables, batch):
    return self.jitted("summaries", self._summaries)(variables, batch)

  def _summaries(self, variables, batch):
    n = min(4, batch["target"].shape[0])
    small = jax.tree.map(lambda x: x[:n], batch)
    state = {k: v for k, v in variables.items() if k != "params"}
    pred = self.render(variables["params"]["renderer"], state, small)
    row = jnp.concatenate([small["rendered"], small["masked"], pred, small["target"]], axis=2)
    return {"rendered|masked|prediction|target": jnp.clip(row, 0, 1)}

  def evaluate_split(self, variables, split: str) -> dict[str, float]:
    """Means over a split's frames (every eval_stride-th), on this host."""
    return self.mean_eval_metrics(variables, self.eval_batches(0, 1, split))

  def write_video(self, variables, path: pathlib.Path, max_frames: int | None = None
                  ) -> dict[str, Any] | None:
    """rendered | masked | prediction | target of the first held-out clip, 25 fps."""
    from data_pipelines import video_io
    clips = self.store.splits.get(self.config.data.get("eval_split", "test")) or []
    if not clips:
      return None
    clip = clips[0]
    frames = list(range(clip.start, clip.end))[:max_frames]
    render = self.jitted("render", lambda v, b: self.render(
        v["params"]["renderer"], {k: x for k, x in v.items() if k != "params"}, b))
    rows = []
    batch_size = int(self.config.data.get("eval_batch_size") or self.config.data.batch_size)
    for i in range(0, len(frames), batch_size):
      chunk = [self.store.example(clip, t) for t in frames[i:i + batch_size]]
      pad = batch_size - len(chunk)
      batch = {k: np.stack([e[k] for e in chunk + chunk[-1:] * pad]) for k in chunk[0]}
      pred = np.asarray(jax.device_get(render(variables, _numeric(batch))))[:len(chunk)]
      rows.append(np.concatenate([batch["rendered"][:len(chunk)], batch["masked"][:len(chunk)],
                                  pred, batch["target"][:len(chunk)]], axis=2))
    video = (np.clip(np.concatenate(rows), 0, 1) * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    video_io.write_video(path, video, fps=25)
    return {"path": str(path), "clip": clip.key, "frames": len(video),
            "layout": "rendered | masked | prediction | target"}

  def write_samples(self, variables, step: int, workdir: str) -> str | None:
    if jax.process_index() != 0:
      return None
    info = self.write_video(jax.device_get(variables),
                            pathlib.Path(workdir) / "samples" / f"step_{step:08d}.mp4", 50)
    return info["path"] if info else None

  def after_training(self, variables, workdir):
    """eval_summary.json (held-out L1 / PSNR / SSIM / mouth L1 per split), renderer.mp4 and the
    per-speaker memories as workdir/explicit_memory/<speaker>.npz."""
    variables = jax.device_get(variables)
    workdir = pathlib.Path(workdir)
    summary: dict[str, Any] = {"memory": self.model.config.memory,
                               "memory_size": int(self.model.config.memory_size)}
    for split in ("test", "test_seen", "test_unseen"):
      if self.store.splits.get(split):
        summary[split] = self.evaluate_split(variables, split)
    summary["num_params"] = int(sum(np.size(x) for x in
                                    jax.tree.leaves(variables["params"]["renderer"])))
    if jax.process_index() == 0:
      video = self.write_video(variables, workdir / "renderer.mp4")
      if video:
        summary["video"] = video
      if self.model.config.memory == "explicit":
        for speaker, memory in self.memories().items():
          if memory["valid"].any():
            memory_lib.save_explicit_memory(
                workdir / "explicit_memory" / f"{speaker}.npz", memory,
                {"speaker": speaker, "root": str(self.config.data.root),
                 "image_size": int(self.config.data.image_size)})
        summary["explicit_memory_dir"] = str(workdir / "explicit_memory")
      (workdir / "eval_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def fast_init_key(rng: jax.Array) -> jax.Array:
  """An 'rbg' key derived from `rng` for parameter initialisation.

  XLA's CPU compiler spends ~0.5 s per threefry-drawn (truncated-normal) parameter tensor, so a
  threefry init of this U-Net compiled for ~15 s; RngBitGenerator draws compile in ~1 s. The values
  stay a deterministic function of `rng`.
  """
  data = jax.random.key_data(rng).reshape(-1)[:2].astype(jnp.uint32)
  return jax.random.wrap_key_data(jnp.concatenate([data, data ^ jnp.uint32(0x9E3779B9)]),
                                  impl="rbg")


def _query(batch) -> jax.Array:
  q = batch["mouth_vertices"]
  return q.reshape(q.shape[0], -1)


def _memory_arg(state: Mapping[str, Any]) -> Mapping[str, Any] | None:
  return state.get(MEMORY, state.get(STATS))


def _numeric(batch: Mapping[str, Any]) -> dict[str, jax.Array]:
  return {k: jnp.asarray(v) for k, v in batch.items() if np.asarray(v).dtype.kind in "biuf"}


def _empty_memory(size: int, key_dim: int, patch: int) -> dict[str, np.ndarray]:
  return {"keys": np.zeros((size, key_dim), np.float32),
          "values": np.zeros((size, patch, patch, 3), np.float32),
          "frame_ids": np.full((size,), -1, np.int64), "valid": np.zeros((size,), bool),
          "key_mean": np.zeros((key_dim,), np.float32), "key_scale": np.float32(1.0)}
