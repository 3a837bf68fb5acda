"""MemFace adaptation to a new speaker from 15-60 s of video (paper Sec. 4.2, supplement B.1).

The paper: pre-train both stages, rebuild the explicit memory from the new speaker's short video,
then fine-tune BOTH stages from the pre-trained parameters on that video. Here that is two runs of
the generic trainer, each initialised from a pre-trained workdir (`train.init_from`: variables only;
fresh optimizer state, step 0). The renderer run rebuilds the speaker's explicit memory from the
training frames of the new video (the renderer task does that for every speaker it trains on).

Data: the new speaker's prepared folder (one speaker, one clip:
`python -m data_pipelines.speech.prepare_speaker --video new.mp4 --out data/new_speaker`), in a root with
its face model; its split.json (or the last 1/11 of the frames) is held out.

  python -m talkingmem.main --config=configs/memface_adapt.py:a2e --workdir=workdirs/adapt_a2e \
      --config.data.root=data/new_speaker_root --config.train.init_from=workdirs/memface_a2e
  python -m talkingmem.main --config=configs/memface_adapt.py:renderer --workdir=workdirs/adapt_renderer \
      --config.data.root=data/new_speaker_root --config.train.init_from=workdirs/memface_renderer
  python -m talkingmem.main --mode=speak --a2e_workdir=workdirs/adapt_a2e \
      --renderer_workdir=workdirs/adapt_renderer --template=data/new_speaker_root/new_speaker \
      --audio=speech.wav --output=out.mp4

Variants `STAGE[,BASE]`: STAGE is `a2e` or `renderer`; BASE is the pre-training config's variant
(`paper` default, `demo`, `tiny`) and must match the pre-trained workdir's model sizes. Learning
rates (the paper's values were lost in its text): stage 1 at 5e-6 (the public reimplementation's
adaptation rate) and stage 2 at 2e-5 (a tenth of its training rate), constant, for `num_steps`
(paper: about 200 epochs of the short video); demo / tiny use higher rates and few steps.
experiments/memface_adaptation.py runs the 15 s vs 30 s comparison on a held-out synthetic speaker.
"""
from __future__ import annotations

import importlib.util
import pathlib

import ml_collections

STAGES = {"a2e": "memface_a2e.py", "renderer": "memface_renderer.py"}
BASES = ("paper", "demo", "tiny")


def _base_config(stage: str, base: str) -> ml_collections.ConfigDict:
  path = pathlib.Path(__file__).with_name(STAGES[stage])
  spec = importlib.util.spec_from_file_location(f"_memface_{stage}_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(base)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  parts = [p for p in (arg or "a2e").split(",") if p]
  stage, base = parts[0], (parts[1] if len(parts) > 1 else "paper")
  if stage not in STAGES or base not in BASES or len(parts) > 2:
    raise ValueError(f"unknown variant {arg!r}; use STAGE[,BASE] with STAGE in {tuple(STAGES)} and "
                     f"BASE in {BASES} (e.g. 'a2e,demo')")
  c = _base_config(stage, base)
  c.adapt_stage = stage
  c.data.root = "data/new_speaker"
  c.data.test_speakers = 0  # One speaker: its held-out frames are the test set.
  c.data.synthetic = None  # Never generate data: the new speaker's folder must exist.
  c.train.init_from = f"workdirs/memface_{stage}" if base == "paper" else ""
  c.train.final_outputs = True
  # Rebuilt for the new speaker instead of loaded: its explicit memory (or the implicit variant's
  # query statistics), made from the new video's training frames.
  c.train.init_fresh = ("explicit_memory", "memory_stats") if stage == "renderer" else ()
  o = c.optim
  if stage == "a2e":
    o.update(learning_rate=5e-6, schedule="constant", warmup_steps=0)
  else:
    o.learning_rate = 2e-5
    if "schedule" in o:
      o.schedule = "constant"
  c.train.update(num_steps=2000, eval_every=500, checkpoint_every=500)
  if "image_every" in c.train:
    c.train.image_every = 500
  if base in ("demo", "tiny"):
    o.learning_rate = 3e-4 if stage == "a2e" else 1e-4
    c.train.update(num_steps=300, log_every=50, eval_every=300, checkpoint_every=300)
    if "image_every" in c.train:
      c.train.image_every = 300
  if base == "tiny":
    c.train.update(num_steps=2, log_every=1, eval_every=2, checkpoint_every=2)
    if "image_every" in c.train:
      c.train.image_every = 2
  return c
