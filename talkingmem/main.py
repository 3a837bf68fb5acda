"""Command-line entry point.

  python -m talkingmem.main --config=configs/mcnet.py:demo --workdir=workdirs/demo [--mode=train]
  python -m talkingmem.main --config=configs/mcnet.py --mode=info
  python -m talkingmem.main --mode=eval --workdir=W [--checkpoint=vox.pth.tar] [--pairs=pairs.csv] \
      [--lpips_backbone=alexnet-owt-7be5be79.pth] [--face_metrics]
  python -m talkingmem.main --mode=animate --workdir=W|--checkpoint=vox.pth.tar --source=img.png \
      --driving=video.mp4 --output=out.mp4 [--no_crop] [--norelative] [--adapt_scale] \
      [--best_frame=N | --find_best_frame] [--side_by_side]
  python -m talkingmem.main --mode=speak --a2e_workdir=A --renderer_workdir=R --audio=x.wav \
      --template=SPEAKER_DIR --output=out.mp4 [--memory=speaker_memory.npz] [--audio_features=f.npy]
  python -m talkingmem.main --mode=export --workdir=W --export_dir=D [--export_formats=stablehlo,savedmodel] \
      [--export_platforms=cpu,cuda,tpu] [--adapt_scale] [--norelative]

Modes: train (train_and_evaluate), info (parameter counts, GFLOPs per frame and forward time), eval
(talkingmem/evaluate.py), animate (talkingmem/animate.py), speak (MemFace audio-driven inference,
talkingmem/speak.py), export (inference functions for serving, talkingmem/export.py).
"""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging
import jax
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, `path.py` or `path.py:variant`.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries and outputs.")
flags.DEFINE_enum("mode", "train", ["train", "info", "eval", "animate", "speak", "export"],
                  "What to run.")
flags.DEFINE_bool("time_forward", True, "info: also time one forward pass (compiles the model).")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (TPU pods, multi-node GPU); "
                  "also done when JAX_COORDINATOR_ADDRESS is set.")
# eval and animate: the model.
flags.DEFINE_string("checkpoint", None, "eval/animate: an official MCNet .pth.tar instead of the workdir's "
                    "checkpoints.")
flags.DEFINE_integer("step", None, "eval/animate/export: checkpoint step in --workdir (default: the latest).")
# eval.
flags.DEFINE_string("pairs", None, "eval: CSV of source_video,source_frame,driving_video,driving_frame "
                    "(default: the FOMM reconstruction protocol).")
flags.DEFINE_string("data_root", None, "eval: dataset root (overrides the config's data.root).")
flags.DEFINE_string("eval_dir", None, "eval: output folder (default: WORKDIR/eval/<protocol>_<step>).")
flags.DEFINE_integer("max_videos", None, "eval: only the first N test videos.")
flags.DEFINE_bool("face_metrics", False, "eval: AKD/AED/CSIM with dlib (slow, CPU).")
flags.DEFINE_enum("lpips_net", "alex", ["alex", "vgg"], "eval: LPIPS backbone.")
flags.DEFINE_string("lpips_backbone", None,
                    "eval: torchvision alexnet-owt-7be5be79.pth (or vgg16-397923af.pth with --lpips_net=vgg).")
flags.DEFINE_string("lpips_heads", None, "eval: LPIPS v0.1 heads (default: the lpips package's).")
flags.DEFINE_bool("pairs_relative", False, "eval: pair motion relative to the driving video's frame 0.")
# animate.
flags.DEFINE_string("source", None, "animate: source image.")
flags.DEFINE_string("driving", None, "animate: driving video (file, frames folder or gif).")
flags.DEFINE_string("output", None, "animate: output .mp4 (with the driving audio), .gif or folder.")
flags.DEFINE_bool("no_crop", False, "animate: whole (centre-squared) images instead of dlib face crops.")
flags.DEFINE_bool("relative", True, "animate/export: relative motion (--norelative: absolute keypoints).")
flags.DEFINE_bool("adapt_scale", False, "animate/export: scale motion by the keypoint hull areas.")
flags.DEFINE_integer("best_frame", None, "animate: driving frame the relative motion starts from.")
flags.DEFINE_bool("find_best_frame", False, "animate: that frame chosen by landmarks closest to the source.")
flags.DEFINE_bool("side_by_side", False, "animate: write source | driving | result.")
flags.DEFINE_integer("batch_size", 16, "animate: frames per batch.")
# speak (also uses --output).
flags.DEFINE_string("a2e_workdir", None, "speak: stage-1 (audio-to-expression) training workdir.")
flags.DEFINE_string("renderer_workdir", None, "speak: stage-2 (neural renderer) training workdir.")
flags.DEFINE_string("audio", None, "speak: audio file (any rate / channels; resampled to 16 kHz).")
flags.DEFINE_string("audio_features", None, "speak: precomputed audio features for stage-1 models "
                    "trained on deepspeech / hubert / wav2vec / windows features.")
flags.DEFINE_string("template", None, "speak: the speaker's prepared folder (prepare_speaker output "
                    "or a synthetic clip folder with coeffs.npz and video.mp4 or frames/).")
flags.DEFINE_string("memory", None, "speak: the speaker's explicit memory .npz (default: built from "
                    "the template's frames).")
flags.DEFINE_string("face_model", None, "speak: 3DMM .npz (default: face_model.npz beside the template).")
flags.DEFINE_string("syncnet_weights", None, "speak: syncnet_v2.model (or its .npz from "
                    "talkingmem.tools.convert_syncnet) to report Sync-C / Sync-D of the output.")


def run_eval() -> None:
  from talkingmem import animate, evaluate  # imported late: dlib, Orbax
  if not FLAGS.eval_dir and not FLAGS.workdir:
    raise app.UsageError("--mode=eval needs --workdir or --eval_dir for its outputs")
  try:
    loaded = animate.load_model(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step)
    data = evaluate.resolve_data_config(loaded, FLAGS.config, FLAGS.workdir, FLAGS.data_root)
  except (animate.CheckpointMismatch, evaluate.NoDataSettings, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
  out_dir = FLAGS.eval_dir or evaluate.default_eval_dir(FLAGS.workdir, loaded, FLAGS.pairs)
  options = evaluate.EvalOptions(
      face_metrics=FLAGS.face_metrics, lpips_net=FLAGS.lpips_net, lpips_backbone=FLAGS.lpips_backbone,
      lpips_heads=FLAGS.lpips_heads, max_videos=FLAGS.max_videos, pairs_relative=FLAGS.pairs_relative)
  report = evaluate.evaluate(loaded, data, out_dir, FLAGS.pairs, options)
  print(evaluate.format_table(report))
  print(f"report: {out_dir}/report.json")


def run_animate() -> None:
  from talkingmem import animate  # imported late: dlib, Orbax
  for name in ("source", "driving", "output"):
    if not getattr(FLAGS, name):
      raise app.UsageError(f"--mode=animate needs --{name}")
  options = animate.AnimateOptions(
      crop=not FLAGS.no_crop, relative=FLAGS.relative, adapt_scale=FLAGS.adapt_scale,
      best_frame=FLAGS.best_frame, find_best_frame=FLAGS.find_best_frame, side_by_side=FLAGS.side_by_side,
      batch_size=FLAGS.batch_size)
  try:
    loaded = animate.load_model(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step)
    summary = animate.animate(loaded, FLAGS.source, FLAGS.driving, FLAGS.output, options)
  except (animate.AnimationInputError, animate.CheckpointMismatch, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
  print(json.dumps(summary, indent=1))


flags.DEFINE_string("export_dir", None, "export: output folder (manifest.json and the artefacts).")
flags.DEFINE_list("export_formats", ["stablehlo", "savedmodel"], "export: stablehlo and/or savedmodel.")
flags.DEFINE_list("export_platforms", None, "export: lower for these platforms (cpu, cuda, rocm, tpu; "
                  "default: this machine's).")


def run_export() -> None:
  from talkingmem import export  # imported late: Orbax, TensorFlow
  if not FLAGS.workdir or not FLAGS.export_dir:
    raise app.UsageError("--mode=export needs --workdir and --export_dir")
  try:
    manifest = export.export_workdir(FLAGS.workdir, FLAGS.export_dir, FLAGS.export_formats, FLAGS.step,
                                     FLAGS.export_platforms,
                                     options={"relative": FLAGS.relative, "adapt_scale": FLAGS.adapt_scale})
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
  print(json.dumps({k: manifest[k] for k in ("task", "source", "options", "artefacts")}, indent=1))


def run_speak() -> None:
  from talkingmem import speak  # imported late: Orbax, the renderer
  for name in ("a2e_workdir", "renderer_workdir", "audio", "template", "output"):
    if not getattr(FLAGS, name):
      raise app.UsageError(f"--mode=speak needs --{name}")
  try:
    summary = speak.speak(FLAGS.a2e_workdir, FLAGS.renderer_workdir, FLAGS.audio, FLAGS.template,
                          FLAGS.output, memory_path=FLAGS.memory, features_path=FLAGS.audio_features,
                          face_model=FLAGS.face_model,
                          options=speak.SpeakOptions(syncnet_weights=FLAGS.syncnet_weights))
  except (ValueError, FileNotFoundError) as e:  # SpeakInputError, memory / checkpoint mismatches
    sys.exit(f"error: {e}")
  print(json.dumps(summary, indent=1))


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.mode == "eval":
    return run_eval()
  if FLAGS.mode == "animate":
    return run_animate()
  if FLAGS.mode == "speak":
    return run_speak()
  if FLAGS.mode == "export":
    return run_export()
  config = FLAGS.config
  if config is None:
    raise app.UsageError(f"--mode={FLAGS.mode} needs --config")
  if FLAGS.multihost or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    # jax reads only JAX_COORDINATOR_ADDRESS itself; hand-started processes give count and id here.
    kwargs = {k: int(os.environ[v]) for k, v in (("num_processes", "JAX_NUM_PROCESSES"),
                                                  ("process_id", "JAX_PROCESS_ID")) if v in os.environ}
    jax.distributed.initialize(**kwargs)
  if FLAGS.mode == "info":
    from talkingmem.model_info import mcnet_info
    if config.task != "mcnet":
      raise app.UsageError(f"--mode=info supports task 'mcnet', not {config.task!r}")
    print(json.dumps(mcnet_info(config.model, FLAGS.time_forward), indent=1))
    return
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required for training")
  from talkingmem import train  # imported late: pulls in the data and checkpoint stacks
  logging.info("JAX devices: %s (process %d of %d)", jax.devices(), jax.process_index(),
               jax.process_count())
  train.train_and_evaluate(config, FLAGS.workdir)


if __name__ == "__main__":
  jax.config.config_with_absl()
  app.run(main)
