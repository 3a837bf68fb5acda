"""`--mode=export`: a workdir's inference functions as StableHLO and TF SavedModel artefacts.

  python -m talkingmem.main --mode=export --workdir=W --export_dir=D [--export_formats=stablehlo,savedmodel]
      [--export_platforms=cpu,cuda,tpu] [--step=N] [--adapt_scale] [--norelative]
"""
from __future__ import annotations

import json

from absl import flags
import ml_collections

from data_pipelines.user_errors import UserInputError

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("export_dir", None, "Output folder (manifest.json and the artefacts).")
  flags.DEFINE_list("export_formats", ["stablehlo", "savedmodel"], "stablehlo and/or savedmodel.")
  flags.DEFINE_list("export_platforms", None, "Lower for these platforms (cpu, cuda, rocm, tpu; "
                    "default: this machine's).")
  flags.DEFINE_integer("step", None, "Checkpoint step in --workdir (default: the latest).")
  flags.DEFINE_bool("relative", True, "MCNet: relative motion (--norelative: absolute keypoints).")
  flags.DEFINE_bool("adapt_scale", False, "MCNet: scale motion by the keypoint hull areas.")


def run(config: ml_collections.ConfigDict | None) -> None:
  del config  # The workdir's own config is exported.
  from talkingmem import export  # pylint: disable=g-import-not-at-top  (Orbax, TensorFlow)
  if not FLAGS.workdir or not FLAGS.export_dir:
    raise UserInputError("--mode=export needs --workdir and --export_dir")
  export.check_export_args(FLAGS.export_dir, FLAGS.export_formats, FLAGS.export_platforms)  # Before loading.
  manifest = export.export_workdir(FLAGS.workdir, FLAGS.export_dir, FLAGS.export_formats, FLAGS.step,
                                   FLAGS.export_platforms,
                                   options={"relative": FLAGS.relative, "adapt_scale": FLAGS.adapt_scale})
  print(json.dumps({k: manifest[k] for k in ("task", "source", "options", "artefacts")}, indent=1))
