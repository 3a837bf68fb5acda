"""MCNet as a trainer task: data, the official objective, optimizer, evaluation and demo outputs."""
from __future__ import annotations

import pathlib
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax

from data_pipelines.fomm import pipelines
from data_pipelines.synthetic import disocclusion, video_set
from talkingmem import losses as image_losses
from talkingmem.mcnet import losses
from talkingmem.mcnet.model import MCNet
from talkingmem.metrics import image as image_metrics
from talkingmem.nn import vgg
from talkingmem.nn.warp import resize_bilinear_align_corners
from talkingmem.synthetic_data import ensure_synthetic
from talkingmem.task import Task

MODULES = ("kp_detector", "generator")


def ensure_synthetic_data(data_config) -> None:
  """Generates the embedded synthetic talking-face set into data.root the first time it is needed."""
  synth = data_config.get("synthetic")
  if synth is None:
    return
  # The set's own seed, not data.seed (which seeds the pair sampling): runs with other seeds (an
  # ablation's) read the same faces, and a cached set made from another seed is refused.
  size, seed = int(data_config.image_size), int(data_config.get("synthetic_seed", 0))
  ensure_synthetic(data_config.root, dict(synth.to_dict(), size=size, seed=seed),
                   lambda root: video_set.generate_dataset(root, size=size, seed=seed, **synth.to_dict()),
                   "talking-face dataset", absent={"head_motion": 1.0})


def cast_floats(tree: Any, dtype) -> Any:
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


class MCNetTask(Task):
  """Reconstruction training (source and driving from the same video), as the official recipe."""

  def __init__(self, config):
    super().__init__(config)
    self.model = MCNet(config.model)
    self.use_gan = config.loss.get("generator_gan", 0.0) > 0
    if self.use_gan:
      from talkingmem.nn.discriminator import MultiScaleDiscriminator
      self.discriminator = MultiScaleDiscriminator(**config.discriminator.to_dict())
    self.compute_dtype = jnp.dtype(config.train.get("compute_dtype", "float32"))
    self.vgg_params = vgg.perceptual_loss_params(config.loss)

  # -- data ------------------------------------------------------------------------------------
  def train_data(self, process_index: int, process_count: int):
    ensure_synthetic_data(self.config.data)
    return pipelines.train_dataset(self.config.data, process_index=process_index,
                                   process_count=process_count)

  def eval_batches(self, process_index: int, process_count: int) -> Iterator[dict]:
    """FOMM protocol chunks as batches: the video's first frame as source for every driving frame."""
    ensure_synthetic_data(self.config.data)
    data = self.config.data
    store = pipelines.make_store(data)
    chunks = pipelines.reconstruction_dataset(data, store=store, pad=True, process_index=process_index,
                                              process_count=process_count)
    max_videos = self.config.get("eval", {}).get("num_videos")
    seen, masks_of = set(), {}
    for chunk in chunks:
      name = str(chunk["video"])
      seen.add(name)
      if max_videos is not None and len(seen) > max_videos:
        return
      batch = {"source": np.broadcast_to(chunk["source"], chunk["driving"].shape),
               "driving": chunk["driving"], "valid": chunk["valid"]}
      if name not in masks_of:  # Ground-truth disocclusion masks: synthetic data only.
        video = store.find(name, data.get("eval_split", "test"))
        masks_of[name] = disocclusion.video_masks(store, video, chunk["driving"].shape[1:3])
      if masks_of[name] is not None:
        batch["disocclusion_mask"] = masks_of[name][chunk["frame_indices"]]
      yield batch

  def steps_per_epoch(self) -> int:
    store = pipelines.make_store(self.config.data)
    from data_pipelines.fomm.pairs import TrainPairSource
    slots = len(TrainPairSource(store, split=self.config.data.get("train_split", "train"),
                                num_repeats=self.config.data.num_repeats,
                                id_sampling=self.config.data.id_sampling))
    return max(1, slots // self.config.data.batch_size)

  # -- model -----------------------------------------------------------------------------------
  def init_variables(self, rng, batch):
    model_rng, disc_rng = jax.random.split(rng)
    variables = self.model.init(model_rng, batch["source"][:1], batch["driving"][:1])
    if self.use_gan:
      kp = jnp.zeros((1, self.config.model.num_kp, 2), batch["driving"].dtype)
      disc = self.discriminator.init(disc_rng, self._pyramid(batch["driving"][:1]), kp)
      variables = {**variables, "params": {**variables["params"], "discriminator": disc["params"]}}
    return variables

  def _pyramid(self, images):
    scales = tuple(self.config.discriminator.scales)
    return image_losses.image_pyramid(images, scales)

  def _gan_terms(self, d_params, prediction, target, kp_driving) -> dict:
    """LSGAN + feature matching (FOMM). One simultaneous update: the generator terms see a frozen
    discriminator and the discriminator term sees a frozen prediction (stop_gradient both ways)."""
    from talkingmem.nn import discriminator as disc_lib
    c = self.config.loss
    kp = jax.lax.stop_gradient(kp_driving["value"])
    real_py, fake_py = self._pyramid(target), self._pyramid(prediction)
    frozen = {"params": jax.lax.stop_gradient(d_params)}
    real = self.discriminator.apply(frozen, real_py, kp)
    fake = self.discriminator.apply(frozen, fake_py, kp)
    terms = {"generator_gan": disc_lib.generator_gan_loss(fake, c.generator_gan)}
    if any(c.feature_matching):
      terms["feature_matching"] = disc_lib.feature_matching_loss(real, fake, tuple(c.feature_matching))
    real_d = self.discriminator.apply({"params": d_params}, real_py, kp)
    fake_d = self.discriminator.apply({"params": d_params}, jax.tree.map(jax.lax.stop_gradient, fake_py), kp)
    terms["discriminator_gan"] = disc_lib.discriminator_gan_loss(real_d, fake_d, c.discriminator_gan)
    return terms

  def optimizer(self, total_steps: int):
    o = self.config.optim
    boundaries = {int(total_steps * at): o.lr_decay for at in o.decay_at}
    schedule = optax.piecewise_constant_schedule(o.learning_rate, boundaries)

    def per_module():
      # Official: clip_grad_norm_(10) separately for generator and keypoint detector, Adam(0.5, 0.999).
      return optax.chain(optax.clip_by_global_norm(o.clip_norm), optax.adam(schedule, b1=o.b1, b2=o.b2))

    labels = lambda params: {k: jax.tree.map(lambda _: k, v) for k, v in params.items()}  # noqa: E731
    modules = MODULES + (("discriminator",) if self.use_gan else ())
    tx = optax.multi_transform({m: per_module() for m in modules}, labels)
    return tx, schedule

  def _forward(self, params, model_state, source, driving, train, noise=None, tap=lambda name, x: x):
    """Keypoints of both frames and the generation, threading BatchNorm statistics in train mode.

    The calls run in the official order (source, driving, generator; the equivariance detection
    follows), which fixes the order of the BatchNorm running-statistic updates.
    """
    state = dict(model_state)

    def run(method, *args, **kwargs):
      nonlocal state
      variables = {"params": params, **state}
      if not train:
        return self.model.apply(variables, *args, method=method, **kwargs)
      out, updates = self.model.apply(variables, *args, train=True, method=method, mutable=["batch_stats"],
                                      **kwargs)
      state = {**state, **updates}
      return out

    kp_source = tap("kp_source", run(MCNet.detect, source))
    kp_driving = tap("kp_driving", run(MCNet.detect, driving))
    generated = run(MCNet.generate, source, kp_source, kp_driving, noise=noise)
    return kp_source, kp_driving, generated, run, lambda: state

  def loss(self, params, model_state, batch, rng, step):
    del step
    c = self.config.loss
    transform_rng, noise_rng = jax.random.split(rng)
    transform = losses.random_tps_params(transform_rng, batch["driving"].shape[0], c.sigma_affine,
                                         c.sigma_tps, c.points_tps)
    # Official training draws fresh StyleConv noise each step; ours adds none unless asked.
    noise = noise_rng if c.get("styleconv_noise", False) else None
    terms, _, state = self.loss_terms(params, model_state, batch, transform, noise)
    total = sum(terms.values())
    return total, ({f"loss/{k}": v for k, v in terms.items()}, state)

  def loss_terms(self, params, model_state, batch, transform: losses.TransformParams, noise=None,
                 taps: dict | None = None):
    """(weighted loss terms in the official summation order, intermediates, updated model state).

    The random draws come in as arguments (the equivariance transform, the StyleConv noise: None,
    a PRNG key or one array per memory call) so a recorded official step can be replayed exactly.
    Losses are computed in float32 under lower-precision compute and in float64 under float64.
    taps: optional zero arrays added to "prediction" and to the keypoint outputs ("kp_source",
    "kp_driving", "kp_transformed": {"value", "jacobian"}); differentiating with respect to them
    gives the loss's gradient at those outputs (the parity tool compares them with the official).
    """
    taps = taps or {}
    tap = lambda name, x: x if name not in taps else (  # noqa: E731
        x + taps[name] if not isinstance(x, dict) else {**x, **{k: x[k] + t for k, t in taps[name].items()}})
    c = self.config.loss
    loss_dtype = jnp.promote_types(self.compute_dtype, jnp.float32)
    src, drv = batch["source"], batch["driving"]
    if self.compute_dtype != jnp.float32:
      params, src, drv = cast_floats(params, self.compute_dtype), src.astype(self.compute_dtype), \
          drv.astype(self.compute_dtype)
    model_params = {k: v for k, v in params.items() if k in MODULES}
    kp_s, kp_d, gen, run, final_state = self._forward(model_params, model_state, src, drv, train=True,
                                                      noise=noise, tap=tap)
    as_loss = lambda t: cast_floats(t, loss_dtype)  # noqa: E731
    kp_s, kp_d, pred = as_loss(kp_s), as_loss(kp_d), tap("prediction", gen["prediction"].astype(loss_dtype))
    target = batch["driving"].astype(loss_dtype)
    terms, extras = {}, {"kp_source": kp_s, "kp_driving": kp_d, "generated": gen}
    if c.perceptual > 0:
      if self.vgg_params is not None:
        terms["perceptual"] = image_losses.perceptual_loss(self.vgg_params, pred, target, tuple(c.scales),
                                                           (c.perceptual,) * 5)
      else:
        terms["pixel_pyramid"] = image_losses.pixel_pyramid_loss(pred, target, tuple(c.scales), c.perceptual)
    if c.equivariance_value > 0 or c.equivariance_jacobian > 0:
      detect = lambda x: tap("kp_transformed", as_loss(run(MCNet.detect, x.astype(src.dtype))))  # noqa: E731
      equivariance = losses.equivariance_losses(
          detect, target, kp_d, transform, c.get("transform_align_corners", True))
      extras["equivariance"] = equivariance
      terms["equivariance_value"] = c.equivariance_value * equivariance.value
      if "jacobian" in kp_d:
        terms["equivariance_jacobian"] = c.equivariance_jacobian * equivariance.jacobian
    if c.kp_distance > 0:
      terms["kp_distance"] = c.kp_distance * sum(
          losses.keypoint_distance_loss(kp["value"], c.kp_distance_threshold, c.kp_distance_official)
          for kp in (kp_s, kp_d))
    if c.memory_consistency > 0 and gen["memory"]:
      terms["memory_consistency"] = c.memory_consistency * losses.memory_consistency_loss(
          as_loss(gen["memory"]))
    if self.use_gan:
      terms.update(self._gan_terms(params["discriminator"], pred, target, kp_d))
    return terms, extras, final_state()

  def _model_variables(self, variables):
    params = {k: v for k, v in variables["params"].items() if k in MODULES}
    return params, {k: v for k, v in variables.items() if k != "params"}

  def eval_metrics(self, variables, batch):
    params, state = self._model_variables(variables)
    _, _, gen, _, _ = self._forward(params, state, batch["source"], batch["driving"], train=False)
    pred, drv = gen["prediction"], batch["driving"]
    metrics = {"l1": image_metrics.l1(pred, drv, reduce=False),
               "psnr": image_metrics.psnr(pred, drv, reduce=False),
               "ssim": image_metrics.ssim(pred, drv, reduce=False),
               "l1_deformed_source": image_metrics.l1(gen["deformed"], drv, reduce=False),
               "l1_source": image_metrics.l1(batch["source"], drv, reduce=False),
               "valid": batch.get("valid", jnp.ones(pred.shape[:1], bool))}
    if "occlusion_map" in gen:
      # Where the occlusion map is ~1 the final blend passes the deformed source through, so the
      # generator's own contribution shows in the L1 weighted by (1 - occlusion): the inpainted parts.
      weight = 1 - resize_bilinear_align_corners(gen["occlusion_map"], *pred.shape[1:3])
      for name, image in (("l1_occluded", pred), ("l1_deformed_source_occluded", gen["deformed"])):
        err = jnp.mean(jnp.abs(image - drv), -1, keepdims=True)
        metrics[name] = jnp.sum(weight * err, (1, 2, 3)) / jnp.maximum(jnp.sum(weight, (1, 2, 3)), 1e-6)
    if "disocclusion_mask" in batch:  # Means over the frames whose mask has pixels (task.valid_weighted_means).
      mask = batch["disocclusion_mask"]
      metrics["weights"] = {}
      for name, value in (("l1_disoccluded", image_metrics.masked_l1(pred, drv, mask)),
                          ("psnr_disoccluded", image_metrics.masked_psnr(pred, drv, mask)),
                          ("l1_deformed_source_disoccluded",
                           image_metrics.masked_l1(gen["deformed"], drv, mask)),
                          ("l1_source_disoccluded", image_metrics.masked_l1(batch["source"], drv, mask))):
        has_pixels = ~jnp.isnan(value)
        metrics[name] = jnp.where(has_pixels, value, 0.0)
        metrics["weights"][name] = has_pixels
    return metrics

  def summaries(self, variables, batch):
    params, state = self._model_variables(variables)
    n = min(4, batch["source"].shape[0])
    src, drv = batch["source"][:n], batch["driving"][:n]
    _, _, gen, _, _ = self._forward(params, state, src, drv, train=False)
    size = src.shape[1:3]
    occlusion = gen.get("occlusion_map", jnp.ones(gen["deformation"].shape[:3] + (1,)))
    occlusion = jax.image.resize(occlusion, (n, *size, 1), "bilinear")
    row = jnp.concatenate([src, drv, gen["deformed"], jnp.repeat(occlusion, 3, -1), gen["prediction"]],
                          axis=2)
    return {"source|driving|deformed|occlusion|prediction": row}

  def write_samples(self, variables, step: int, workdir: str) -> str | None:
    """A short animation of a held-out identity by another one: workdir/samples/step_<N>.mp4."""
    from talkingmem.mcnet.demo_outputs import write_animation
    params, state = self._model_variables(variables)
    path = pathlib.Path(workdir) / "samples" / f"step_{step:08d}.mp4"
    info = write_animation(self, {"params": params, **state}, path, max_frames=32)
    return info["path"] if info else None

  def after_training(self, variables, workdir):
    """The demo's evaluation summary and an animation of a held-out identity."""
    from talkingmem.mcnet.demo_outputs import write_demo_outputs
    params, state = self._model_variables(variables)
    return write_demo_outputs(self, {"params": params, **state}, pathlib.Path(workdir))
