"""`--mode=live`: a photo animated by a camera, frame by frame, with achieved frames/s and latency.

  python -m talkingmem.main --mode=live --workdir=W|--checkpoint=vox.pth.tar --source=img.png --camera=0
  python -m talkingmem.main --mode=live --workdir=W --source=img.png --camera=clip.mp4 --output=live.mp4

--camera is a camera index or a video file/stream URL standing in for one (read at its own frame rate).
The result is shown in a window when a display exists (q or Esc stops), and written to --output when
given (frames at the model size, at the camera's rate). Slower than the camera, frames are dropped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys

from absl import app, flags
import ml_collections
import numpy as np

from talkingmem.mcnet.model_flags import define_model_flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  define_model_flags()
  flags.DEFINE_string("source", None, "Source image.")
  flags.DEFINE_string("camera", "0", "Camera index, or a video file/stream URL standing in for one.")
  flags.DEFINE_string("output", None, "Also write the animated frames to this .mp4/.gif/folder.")
  flags.DEFINE_bool("no_crop", False, "Whole (centre-squared) frames instead of dlib face crops.")
  flags.DEFINE_bool("relative", True, "Motion relative to the first camera frame (--norelative: absolute).")
  flags.DEFINE_bool("adapt_scale", False, "Scale motion by the keypoint hull areas.")
  flags.DEFINE_integer("max_frames", 0, "Stop after this many animated frames (0: when the source ends).")
  flags.DEFINE_bool("show", True, "Show a window when a display exists (--noshow: never).")


def camera_source(value: str) -> int | str:
  return int(value) if value.isdigit() else value


def run(config: ml_collections.ConfigDict | None) -> None:
  del config  # The model's own config comes with the workdir or checkpoint.
  import cv2  # pylint: disable=g-import-not-at-top
  from data_pipelines import video_io  # pylint: disable=g-import-not-at-top
  from talkingmem.mcnet import animate, live  # pylint: disable=g-import-not-at-top  (dlib, Orbax)
  if not FLAGS.source:
    raise app.UsageError("--mode=live needs --source (the photo to animate)")
  window = FLAGS.show and bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
  if not window and not FLAGS.output:
    raise app.UsageError("no display to show the result: give --output=live.mp4")
  written: list[np.ndarray] = []

  def show(frame: np.ndarray) -> bool:
    if FLAGS.output:
      written.append(frame)
    if window:
      cv2.imshow("talkingmem live", frame[..., ::-1])
      return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)
    return True

  try:
    loaded = animate.load_model(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step)
    animator = live.LiveAnimator(loaded, animate.read_image(FLAGS.source), crop=not FLAGS.no_crop,
                                 relative=FLAGS.relative, adapt_scale=FLAGS.adapt_scale)
    compile_s = animator.compile()
    reader = live.LatestFrameReader(camera_source(FLAGS.camera))
    stats = dataclasses.replace(live.run_live(animator, reader, show, FLAGS.max_frames or None),
                                compile_s=compile_s)
  except (animate.AnimationInputError, animate.CheckpointMismatch, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
  finally:
    if window:
      cv2.destroyAllWindows()
  print(stats.line())
  if FLAGS.output and written:
    video_io.write_video(FLAGS.output, np.stack(written), fps=reader.fps)
  print(json.dumps(dataclasses.asdict(stats) | {"output": FLAGS.output, "size": loaded.image_size}))
