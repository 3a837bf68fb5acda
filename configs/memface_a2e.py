"""MemFace stage 1 (audio-to-expression with the implicit memory) configurations.

Default `paper`: the paper's sizes (implicit memory of M = 1000 key/value pairs of d = 64, hidden
size 64, Adam 1e-4, alternating model / memory updates in the first half of training; loss weights
1 / 10 / 1 as the public reimplementation, the paper's were lost). Data: a GRID-like set in the
layout of `data_pipelines/speech/layout.py` (per speaker / clip: audio.wav, coeffs.npz,
mouth_vertices.npy) with its 3DMM as root/face_model.npz:
  python -m talkingmem.main --config=configs/memface_a2e.py --workdir=workdirs/memface_a2e
Variants (`configs/memface_a2e.py:NAME`, a base optionally followed by ",ablation"):
  paper            the default above
  demo             synthetic speech (16 speakers x 40 sentences, espeak-ng, generated on first use
                   into workdirs/data/speech_synth, no frames rendered), paper-sized model, a few
                   minutes on 2 CPU cores (3000 steps of 16 x 32 frames, Adam 1e-3 with cosine
                   decay: the paper's 1e-4 is too slow for a demo); writes eval_a2e.json
  tiny             test-sized model and data
  latent           `demo` on the one-to-many synthetic set: each clip has a speaking mode
                   (data_pipelines/synthetic/clip_latent.py) that moves the mouth much and the audio
                   little (workdirs/data/speech_latent); the data of experiments/memface_ablation.py
  grid             the GRID corpus prepared by `python -m data_pipelines.speech.grid --source GRID
                   --out data/grid` (one clip per video, the built-in 3DMM's coefficients):
                   paper-sized model, 2 held-out speakers besides the held-out sentences;
                   ArrayRecord shards (`--tfds`) with --config.data.format=tfds
                   --config.data.root=<builder_dir>
  no_memory        ablation "w/o mem." (Table 3): `:no_memory` (paper sizes) or `:demo,no_memory`
  explicit_memory  ablation "w/ expl. mem." (Table 3): audio-feature keys, coefficient values chosen
                   from training frames by mouth-vertex dissimilarity; `:explicit_memory` or
                   `:demo,explicit_memory`
The Table 3 comparison on synthetic data, same data and steps:
  python -m talkingmem.main --config=configs/memface_a2e.py:demo --workdir=workdirs/a2e_mem
  python -m talkingmem.main --config=configs/memface_a2e.py:demo,no_memory \
      --workdir=workdirs/a2e_nomem
Any field can be overridden, e.g. --config.data.root=/data/grid --config.model.memory_slots=500,
--config.model.memory_project=True (eq. 2's learned W_q, W_k), --config.optim.alternate=False.
"""
from __future__ import annotations

import ml_collections

from data_pipelines.synthetic.visemes import NAMES as SYNTHETIC_MOUTH_COMPONENTS
from talkingmem.config_variants import parse_variant

BASES = ("paper", "demo", "tiny", "grid", "latent")
ABLATIONS = {"no_memory": "none", "explicit_memory": "explicit"}


def _model(memory: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      d_model=64, num_heads=4, encoder_layers=2, decoder_layers=2, mlp_dim=128, dropout=0.1,
      conv_features=(32, 32, 64, 64), memory=memory, memory_slots=1000, memory_dim=64,
      memory_project=False))


def _data(root: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      root=root, format="folders", feature="mel", feature_window=16, window=32, batch_size=32,
      eval_batch_size=32, seed=0, split_seed=0, test_fraction=0.1, test_speakers=0,
      exp_components=None, face_model=None, normalize_features=True, read_threads=2,
      worker_count=0, num_epochs=None, train_split="train", eval_split="test", synthetic=None,
      synthetic_seed=0))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant, ablation = parse_variant(arg, BASES, ABLATIONS)
  memory = ABLATIONS[ablation] if ablation else "implicit"
  c = ml_collections.ConfigDict()
  c.task = "memface_a2e"
  c.seed = 0
  c.model = _model(memory)
  c.data = _data("data/grid")
  c.train = ml_collections.ConfigDict(dict(
      num_steps=100_000, num_epochs=None, compute_dtype="float32", log_every=100,
      eval_every=5000, image_every=5000, checkpoint_every=5000, keep_checkpoints=3,
      keep_period=None, eval_batches=None, async_checkpoints=True, num_devices=None))
  c.loss = ml_collections.ConfigDict(dict(w_exp=1.0, w_vertex=10.0, w_reg=1.0))
  c.optim = ml_collections.ConfigDict(dict(
      learning_rate=1e-4, b1=0.9, b2=0.999, clip_norm=1.0, schedule="constant", warmup_steps=0,
      final_lr_fraction=0.0, alternate=True, alternate_fraction=0.5))
  c.explicit_memory_frames = 20000  # Training frames the explicit memory is chosen from.
  if variant == "grid":
    c.data.update(root="data/grid", test_speakers=2)
  if variant in ("demo", "tiny", "latent"):
    c.data.root = "workdirs/data/speech_synth"
    c.data.exp_components = SYNTHETIC_MOUTH_COMPONENTS
    c.data.batch_size = c.data.eval_batch_size = 16
    c.data.synthetic = ml_collections.ConfigDict(dict(
        num_speakers=16, clips_per_speaker=40, render=False, size=64, clip_latent=False,
        latent_prosody=0.25))
    c.optim.update(learning_rate=1e-3, schedule="cosine", warmup_steps=100, final_lr_fraction=0.05)
    c.train.update(num_steps=3000, log_every=100, eval_every=1000, image_every=1000,
                   checkpoint_every=1000)
  if variant == "latent":
    c.data.root = "workdirs/data/speech_latent"
    c.data.synthetic.clip_latent = True
  if variant == "tiny":
    c.data.root = "workdirs/data/speech_synth_tiny"
    c.data.synthetic.update(num_speakers=3, clips_per_speaker=3)
    c.data.update(window=8, batch_size=8, eval_batch_size=8, test_fraction=0.34)
    c.model.update(d_model=16, num_heads=2, encoder_layers=1, decoder_layers=1, mlp_dim=32,
                   conv_features=(8, 8), memory_slots=32, memory_dim=16)
    c.optim.update(warmup_steps=0)
    c.train.update(num_steps=4, log_every=2, eval_every=4, image_every=4, checkpoint_every=2,
                   eval_batches=1, async_checkpoints=False)
    c.explicit_memory_frames = 200
  return c
