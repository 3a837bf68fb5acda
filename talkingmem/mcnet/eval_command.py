"""`--mode=eval`: the FOMM reconstruction protocol (or a pair list) on a workdir or official checkpoint.

  python -m talkingmem.main --mode=eval --workdir=W [--checkpoint=vox.pth.tar] [--pairs=pairs.csv] \
      [--lpips_backbone=alexnet-owt-7be5be79.pth] [--face_metrics]
"""
from __future__ import annotations

import pathlib

from absl import flags
import ml_collections

from data_pipelines.fomm import pipelines
from data_pipelines.user_errors import UserInputError, check_output
from talkingmem.config_checks import validate_config

from talkingmem.mcnet.model_flags import define_model_flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  define_model_flags()
  flags.DEFINE_string("pairs", None, "CSV of source_video,source_frame,driving_video,driving_frame "
                      "(default: the FOMM reconstruction protocol).")
  flags.DEFINE_string("data_root", None, "Dataset root (overrides the config's data.root).")
  flags.DEFINE_string("eval_dir", None, "Output folder (default: WORKDIR/eval/<protocol>_<step>).")
  flags.DEFINE_integer("max_videos", None, "Only the first N test videos.")
  flags.DEFINE_bool("face_metrics", False, "AKD/AED/CSIM with dlib (slow, CPU).")
  flags.DEFINE_enum("lpips_net", "alex", ["alex", "vgg"], "LPIPS backbone.")
  flags.DEFINE_string("lpips_backbone", None,
                      "torchvision alexnet-owt-7be5be79.pth (or vgg16-397923af.pth with --lpips_net=vgg).")
  flags.DEFINE_string("lpips_heads", None, "LPIPS v0.1 heads (default: the lpips package's).")
  flags.DEFINE_bool("pairs_relative", False, "Pair motion relative to the driving video's frame 0.")


def run(config: ml_collections.ConfigDict | None) -> None:
  from talkingmem.mcnet import animate, evaluate  # pylint: disable=g-import-not-at-top  (dlib, Orbax)
  if not FLAGS.eval_dir and not FLAGS.workdir:
    raise UserInputError("--mode=eval needs --workdir or --eval_dir for its outputs")
  if config is not None:
    validate_config(config, "eval")
  if FLAGS.max_videos is not None and FLAGS.max_videos < 1:
    raise UserInputError(f"--max_videos={FLAGS.max_videos} must be >= 1 (or left out for all videos)")
  if FLAGS.data_root and not pathlib.Path(FLAGS.data_root).is_dir():
    raise UserInputError(f"--data_root={FLAGS.data_root} is not a folder; give the dataset root")
  if FLAGS.pairs:  # Its lines now; the videos it names once the data root is known.
    pipelines.read_pair_csv(FLAGS.pairs)
  if FLAGS.eval_dir:
    check_output(FLAGS.eval_dir, "--eval_dir", (FLAGS.workdir, FLAGS.data_root, FLAGS.pairs), folder_ok=True)
  loaded = animate.load_model(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step)
  data = evaluate.resolve_data_config(loaded, config, FLAGS.workdir, FLAGS.data_root)
  out_dir = FLAGS.eval_dir or evaluate.default_eval_dir(FLAGS.workdir, loaded, FLAGS.pairs)
  options = evaluate.EvalOptions(
      face_metrics=FLAGS.face_metrics, lpips_net=FLAGS.lpips_net, lpips_backbone=FLAGS.lpips_backbone,
      lpips_heads=FLAGS.lpips_heads, max_videos=FLAGS.max_videos, pairs_relative=FLAGS.pairs_relative)
  report = evaluate.evaluate(loaded, data, out_dir, FLAGS.pairs, options)
  print(evaluate.format_table(report))
  print(f"report: {out_dir}/report.json")
