"""MCNet configurations.

Default: the paper's VoxCeleb 256x256 setting (15 keypoints, meta-memory 512x32x32, batch 64 global,
100 epochs x 75 repeats, Adam 2e-4 with x0.1 at 80 %). Data: prepare VoxCeleb with
`python -m data_pipelines.fomm.prepare --dataset voxceleb --source <folder> --out data/voxceleb`.
  python -m talkingmem.main --config=configs/mcnet.py --workdir=workdirs/mcnet_vox
Variants (`configs/mcnet.py:NAME`):
  demo      small model on the embedded synthetic faces (generated on first use), ~10 min on 2 CPU cores
            python -m talkingmem.main --config=configs/mcnet.py:demo --workdir=workdirs/demo
  baseline  the paper's ablation baseline: the same model without memory units
            python -m talkingmem.main --config=configs/mcnet.py:baseline --workdir=workdirs/baseline
  tiny      test-sized model and data (64x64, few channels, a few steps)
  fixture   the paper's 256x256 layout with the official fixtures' small widths (kp/dense motion/generator
            8..64 channels, memory 16x16x16): what experiments/benchmark_vs_official.py runs on a CPU
Any field can be overridden, e.g. --config.model.num_kp=10 --config.data.root=/data/vox.
The paper's Table-4 ablations are fields: --config.model.memory.layers=first (single layer),
--config.model.memory.iscm_keypoints=False / iscm_features=False (ISCM inputs); training pairs that
stress disocclusion: --config.data.pair_sampling=disocclusion (experiments/memory_ablation.py runs them all).
"""
from __future__ import annotations

import ml_collections

from data_pipelines.user_errors import UserInputError

from talkingmem.mcnet.config import model_config, tiny_model_config


def _data(root: str, image_size: int, batch_size: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      root=root, format="folders", dataset=None, image_size=image_size, num_repeats=75,
      id_sampling=True, augment=True, batch_size=batch_size, seed=0, worker_count=0, read_threads=2,
      eval_chunk_size=16, synthetic=None, synthetic_seed=0, decoded_cache_mb=0,
      # 'disocclusion': favour pairs with large yaw / occluder differences (data_pipelines/fomm/pairs.py).
      pair_sampling="uniform", pair_candidates=8, disocclusion_fraction=0.5))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = arg or "paper"
  if variant not in ("paper", "baseline", "demo", "tiny", "fixture"):
    raise UserInputError(f"unknown variant {variant!r} in configs/mcnet.py:{variant}; choose paper, demo, "
                         "baseline, tiny or fixture")
  c = ml_collections.ConfigDict()
  c.task = "mcnet"
  c.seed = 0
  c.model = model_config(256)
  c.model.use_memory = variant != "baseline"
  c.data = _data("data/voxceleb", 256, 64)
  c.train = ml_collections.ConfigDict(dict(
      # A typed placeholder (None = train num_epochs), so that --config.train.num_steps=N overrides it.
      num_steps=ml_collections.config_dict.placeholder(int), num_epochs=100, compute_dtype="float32", log_every=100, eval_every=5000,
      image_every=1000, checkpoint_every=2000, keep_checkpoints=3, keep_period=20000,
      eval_batches=50, async_checkpoints=True, num_devices=None, final_outputs=True, video_every=5000))
  c.loss = ml_collections.ConfigDict(dict(
      perceptual=10.0, scales=(1.0, 0.5, 0.25, 0.125), vgg19_weights="",
      equivariance_value=10.0, equivariance_jacobian=10.0, sigma_affine=0.05, sigma_tps=0.005,
      points_tps=5, kp_distance=10.0, kp_distance_threshold=0.2, kp_distance_official=False,
      memory_consistency=10.0,
      # Recipe differences by design; the official values (False, True) are what the parity run uses.
      # align_corners=False makes the official equivariance warp zoom by n/(n-1) (losses.transform_frame);
      # StyleConv noise adds a random input to the memory each step.
      transform_align_corners=True, styleconv_noise=False,
      # Optional GAN (off in the official recipe: generator_gan 0).
      generator_gan=0.0, discriminator_gan=1.0, feature_matching=(10.0, 10.0, 10.0, 10.0)))
  c.discriminator = ml_collections.ConfigDict(dict(
      scales=(1.0,), block_expansion=32, max_features=512, num_blocks=4, use_kp=True))
  c.optim = ml_collections.ConfigDict(dict(
      learning_rate=2e-4, b1=0.5, b2=0.999, lr_decay=0.1, decay_at=(0.8,), clip_norm=10.0))
  c.eval = ml_collections.ConfigDict(dict(num_videos=None))
  if variant == "fixture":  # /work/shared/fixtures/mcnet_official/config.json's model_params
    for part in (c.model.kp_detector, c.model.dense_motion, c.model.generator):
      part.update(block_expansion=8, max_features=64)
    c.model.memory.update(memory_channels=16, memory_size=16)
  if variant in ("demo", "tiny"):
    c.model = tiny_model_config(64)
    c.data = _data("workdirs/data/synthetic_demo64_motion2", 64, 8)
    c.data.num_repeats = 1
    c.data.decoded_cache_mb = 256  # The whole demo set (~95 MB decoded): no video decoding after epoch 1.
    # One 64-frame (2.6 s) clip per identity rather than two of 32: frame pairs drawn from a longer clip
    # differ by more head motion, which is what teaches the keypoints within 600 steps (measured:
    # deformed-source L1 26 % below source L1 at step 600, vs 4 % with 32-frame clips).
    c.data.synthetic = ml_collections.ConfigDict(dict(
        num_identities=120, clips_per_identity=1, frames_per_clip=64, test_fraction=0.1,
        # Twice the default head movement within a clip: motion a person sees, and what the warp learns
        # (measured, 1600 steps: held-out L1 0.595x the still source's, vs 0.70x at head_motion 1).
        video_format="mp4", head_motion=2.0))
    c.optim.learning_rate = 1e-3  # Small model, short schedule (x0.1 at step 1280).
    # 1600 steps at ~3.5 steps/s on 2 CPU cores: ~8 min of training, ~10 min with data generation.
    c.train.update(num_steps=1600, num_epochs=None, log_every=50, eval_every=800, image_every=800,
                   checkpoint_every=400, keep_period=None, eval_batches=8, video_every=800)
    c.eval.num_videos = 8
  if variant == "tiny":
    c.model = tiny_model_config(32)
    c.optim.learning_rate = 2e-4  # The paper's: tests compare 1- and 8-device losses after Adam steps.
    c.loss.scales = (1.0, 0.5)
    c.data = _data("workdirs/data/synthetic32_tiny", 32, 8)
    c.data.num_repeats = 1
    c.data.synthetic = ml_collections.ConfigDict(dict(
        num_identities=6, clips_per_identity=1, frames_per_clip=8, test_fraction=0.34, video_format="mp4"))
    c.data.eval_chunk_size = 8
    c.train.update(num_steps=4, log_every=2, eval_every=4, image_every=4, checkpoint_every=2,
                   eval_batches=1, async_checkpoints=False, video_every=0)
    c.discriminator.update(block_expansion=8, max_features=32, num_blocks=2)
    c.eval.num_videos = 1
  return c
