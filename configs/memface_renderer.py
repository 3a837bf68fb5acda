"""MemFace stage 2 (neural renderer with the explicit memory) configurations.

Default `paper`: 512 x 512 frames. The paper's resolution did not survive in our copy of the text
("we adopt the image resolution of ."); 512 is what its lineage uses (Neural Voice Puppetry's
renderer, the NeRF talking heads on HDTF / Obama crops at 450-512), so a U-Net of 8 down blocks
(512 -> 2, pix2pix's unet_256 depth + 1), 64 base features, explicit memory of N = 300 (Table 5(b)
best trade-off), 128 px mouth patches, Adam 1e-4 (the reimplementation notes; pix2pix betas);
loss weights: L1 10, VGG 1 per layer, PatchGAN 1 (the paper's lambdas were lost). Data: prepared
speakers (`python -m data_pipelines.speech.prepare_speaker --video talk.mp4 --out data/speakers/NAME
--size 512`) under config.data.root:
  python -m talkingmem.main --config=configs/memface_renderer.py --workdir=workdirs/renderer \
      --config.data.root=data/speakers --config.loss.vgg19_weights=vgg19-dcbb9e9d.pth
Variants (`configs/memface_renderer.py:NAME`, a base optionally followed by ",ablation"):
  paper            the default above
  demo             synthetic speech with rendered 64 x 64 frames (4 speakers x 16 sentences,
                   generated on first use into workdirs/data/speech_synth_render64), a U-Net of 4
                   down blocks (16..128 features), N = 150 memory slots of 20 px patches, 800 steps
                   of 16 frames (about 3.5 epochs, ~10 min on 2 free CPU cores), no GAN (the
                   Table 4 comparison is read in L1 / PSNR / SSIM; the GAN doubles the CPU step);
                   writes eval_summary.json and renderer.mp4
  tiny             test-sized model and data (GAN on, so tests cover it)
  interior         `demo` with per-speaker mouth interiors (teeth, tongue, inner lip) that the
                   3DMM render lacks and only show as the mouth opens
                   (workdirs/data/speech_interior_render64); the data of experiments/memface_ablation.py
  no_memory        ablation "w/o mem." (Table 4): `:demo,no_memory` or `:no_memory` (paper sizes)
  implicit_memory  ablation "w/ impl. mem." (Table 4): learned keys / patches instead
The Table 4 comparison on synthetic data, same data and steps:
  python -m talkingmem.main --config=configs/memface_renderer.py:demo --workdir=workdirs/nr_mem
  python -m talkingmem.main --config=configs/memface_renderer.py:demo,no_memory \
      --workdir=workdirs/nr_nomem
Explicit memories are built from each speaker's training frames at start (or loaded:
--config.explicit_memory.paths='{"spk000": "mem.npz"}') and saved to workdir/explicit_memory/.
"""
from __future__ import annotations

import ml_collections

from talkingmem.config_variants import parse_variant
BASES = ("paper", "demo", "tiny", "interior")
ABLATIONS = {"no_memory": "none", "implicit_memory": "implicit"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant, ablation = parse_variant(arg, BASES, ABLATIONS)
  c = ml_collections.ConfigDict()
  c.task = "memface_renderer"
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(
      image_size=512, base_features=64, max_features=512, num_downs=8,
      memory=ABLATIONS[ablation] if ablation else "explicit", memory_size=300,
      patch_size=128, patch_features=64, temperature=0.1, exclude_radius=2))
  c.data = ml_collections.ConfigDict(dict(
      root="data/speakers", image_size=512, patch_size=128, batch_size=8, eval_batch_size=8,
      seed=0, split_seed=0, test_fraction=0.1, test_speakers=0, eval_stride=1, read_threads=2,
      num_epochs=None, train_split="train", eval_split="test", synthetic=None, synthetic_seed=0))
  c.explicit_memory = ml_collections.ConfigDict(dict(paths=None))
  # LPIPS in the held-out evaluation when its weight files are supplied (talkingmem/metrics/lpips.py):
  # torchvision alexnet-owt-7be5be79.pth (or vgg16) and optionally the lpips v0.1 heads.
  c.eval = ml_collections.ConfigDict(dict(lpips_net="alex", lpips_backbone="", lpips_heads=""))
  c.loss = ml_collections.ConfigDict(dict(
      l1=10.0, perceptual=1.0, scales=(1.0, 0.5, 0.25, 0.125), vgg19_weights="", gan=1.0))
  c.discriminator = ml_collections.ConfigDict(dict(block_expansion=64, max_features=512,
                                                   num_blocks=4))
  c.optim = ml_collections.ConfigDict(dict(learning_rate=1e-4, b1=0.5, b2=0.999, clip_norm=None,
                                           decay_at=(), lr_decay=0.1))
  c.train = ml_collections.ConfigDict(dict(
      num_steps=100_000, num_epochs=None, compute_dtype="float32", log_every=100,
      eval_every=5000, image_every=5000, video_every=10000, checkpoint_every=5000,
      keep_checkpoints=3, keep_period=None, eval_batches=None, async_checkpoints=True,
      num_devices=None))
  if variant in ("demo", "tiny", "interior"):
    c.data.update(root="workdirs/data/speech_synth_render64", image_size=64, patch_size=20,
                  batch_size=16, eval_batch_size=16, test_fraction=0.125, eval_stride=2)
    c.data.synthetic = ml_collections.ConfigDict(dict(
        num_speakers=4, clips_per_speaker=16, render=True, size=64, mouth_interior=False))
    c.model.update(image_size=64, base_features=16, max_features=128, num_downs=4,
                   memory_size=150, patch_size=20, patch_features=32)
    c.loss.update(gan=0.0, scales=(1.0, 0.5, 0.25))
    c.discriminator.update(block_expansion=16, max_features=128, num_blocks=3)
    c.optim.update(learning_rate=5e-4, decay_at=(0.8,))
    c.train.update(num_steps=800, log_every=50, eval_every=400, image_every=400,
                   video_every=800, checkpoint_every=400)
  if variant == "interior":
    c.data.root = "workdirs/data/speech_interior_render64"
    c.data.synthetic.mouth_interior = True
  if variant == "tiny":
    c.data.update(root="workdirs/data/speech_synth_render32_tiny", image_size=32, patch_size=8,
                  batch_size=8, eval_batch_size=8, test_fraction=0.34, eval_stride=4)
    c.data.synthetic.update(num_speakers=2, clips_per_speaker=3, size=32)
    c.model.update(image_size=32, base_features=4, max_features=16, num_downs=3, memory_size=8,
                   patch_size=8, patch_features=4)
    c.loss.update(gan=0.1, scales=(1.0, 0.5))
    c.discriminator.update(block_expansion=4, max_features=16, num_blocks=2)
    c.train.update(num_steps=4, log_every=2, eval_every=4, image_every=4, video_every=4,
                   checkpoint_every=2, eval_batches=1, async_checkpoints=False)
  return c
