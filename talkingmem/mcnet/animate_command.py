"""`--mode=animate`: a photo animated by a driving video, with our workdir or the official checkpoint.

  python -m talkingmem.main --mode=animate --workdir=W|--checkpoint=vox.pth.tar --source=img.png \
      --driving=video.mp4 --output=out.mp4 [--no_crop] [--norelative] [--adapt_scale] \
      [--best_frame=N | --find_best_frame] [--side_by_side] [--nopaste_back] [--max_size=1024] [--face_index=N]
"""
from __future__ import annotations

import json

from absl import flags
import ml_collections

from data_pipelines.user_errors import UserInputError

from talkingmem.mcnet.model_flags import define_model_flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  define_model_flags()
  flags.DEFINE_string("source", None, "Source image.")
  flags.DEFINE_string("driving", None, "Driving video (file, frames folder or gif).")
  flags.DEFINE_string("output", None, "Output .mp4 (with the driving audio), .gif or folder.")
  flags.DEFINE_bool("no_crop", False, "Whole (centre-squared) images instead of dlib face crops.")
  flags.DEFINE_bool("relative", True, "Relative motion (--norelative: absolute keypoints).")
  flags.DEFINE_bool("adapt_scale", False, "Scale motion by the keypoint hull areas.")
  flags.DEFINE_integer("best_frame", None, "Driving frame the relative motion starts from.")
  flags.DEFINE_bool("find_best_frame", False, "That frame chosen by landmarks closest to the source.")
  flags.DEFINE_bool("side_by_side", False, "Write source | driving | result.")
  flags.DEFINE_integer("batch_size", 16, "Frames per batch.")
  flags.DEFINE_bool("paste_back", True, "With cropping: the animated face pasted back into the whole "
                    "photo (feathered), at the photo's size bounded by --max_size; --nopaste_back: the crop.")
  flags.DEFINE_integer("max_size", 1024, "Longest side of the pasted-back output, in pixels (0: the photo's).")
  flags.DEFINE_integer("face_index", None, "Which face of the source to animate, counted left to right "
                       "from 0 (default: the largest).")


def run(config: ml_collections.ConfigDict | None) -> None:
  del config  # The model's own config comes with the workdir or checkpoint.
  from talkingmem.mcnet import animate  # pylint: disable=g-import-not-at-top  (dlib, Orbax)
  for name in ("source", "driving", "output"):
    if not getattr(FLAGS, name):
      raise UserInputError(f"--mode=animate needs --{name}")
  if not FLAGS.workdir and not FLAGS.checkpoint:
    raise UserInputError("--mode=animate needs a model: --workdir=<training run> or --checkpoint=vox.pth.tar")
  options = animate.AnimateOptions(
      crop=not FLAGS.no_crop, relative=FLAGS.relative, adapt_scale=FLAGS.adapt_scale,
      best_frame=FLAGS.best_frame, find_best_frame=FLAGS.find_best_frame, side_by_side=FLAGS.side_by_side,
      batch_size=FLAGS.batch_size, paste_back=FLAGS.paste_back, max_size=FLAGS.max_size or None,
      face_index=FLAGS.face_index)
  # Every argument before the model loads (minutes on a long video otherwise wasted).
  animate.check_animation_args(FLAGS.source, FLAGS.driving, FLAGS.output, options,
                               (FLAGS.workdir, FLAGS.checkpoint))
  loaded = animate.load_model(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step)
  summary = animate.animate(loaded, FLAGS.source, FLAGS.driving, FLAGS.output, options)
  print(json.dumps(summary, indent=1))
