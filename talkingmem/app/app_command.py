"""`--mode=app`: the browser app (Animate, Speak, Memory) on http://127.0.0.1:PORT.

  python -m talkingmem.main --mode=app --workdir=W [--checkpoint=vox.pth.tar] [--models=W2,other.pth.tar] \
      [--a2e_workdir=A --renderer_workdir=R --speakers=SPEAKER_DIR] [--port=7860]

Gradio with analytics and share links off and nothing fetched at run time. The models and speakers
are fixed here at start-up; a request only picks among them and uploads files (size-limited).
"""
from __future__ import annotations

import pathlib
import tempfile

from absl import app, flags
import ml_collections

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("checkpoint", None, "An official MCNet .pth.tar to offer (besides --workdir).")
  flags.DEFINE_list("models", [], "More MCNet training workdirs or .pth.tar files to offer.")
  flags.DEFINE_string("a2e_workdir", None, "MemFace stage-1 workdir (the Speak tab).")
  flags.DEFINE_string("renderer_workdir", None, "MemFace stage-2 workdir (the Speak tab).")
  flags.DEFINE_list("speakers", [], "prepare_speaker folders offered in the Speak tab.")
  flags.DEFINE_integer("port", 7860, "Port on 127.0.0.1.")
  flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: every interface).")
  flags.DEFINE_integer("max_upload_mb", 50, "Largest upload, in MB.")
  flags.DEFINE_string("app_temp_dir", None, "The app's temporary folder (default: a new one).")


def run(config: ml_collections.ConfigDict | None) -> None:
  del config
  from talkingmem.app import core  # pylint: disable=g-import-not-at-top
  models = tuple(m for m in [FLAGS.workdir, FLAGS.checkpoint, *FLAGS.models] if m)
  if not models:
    raise app.UsageError("--mode=app needs a model: --workdir=W and/or --checkpoint=vox.pth.tar")
  missing = [m for m in models + tuple(FLAGS.speakers) if not pathlib.Path(m).exists()]
  if missing:
    raise app.UsageError(f"not found: {', '.join(missing)}")
  temp_dir = pathlib.Path(FLAGS.app_temp_dir or tempfile.mkdtemp(prefix="talkingmem-app-"))
  core.prepare_environment(temp_dir)
  context = core.AppContext(temp_dir=temp_dir, models=models, a2e_workdir=FLAGS.a2e_workdir,
                            renderer_workdir=FLAGS.renderer_workdir, speakers=tuple(FLAGS.speakers),
                            max_upload_mb=FLAGS.max_upload_mb)
  print(f"talkingmem app on http://{FLAGS.host}:{FLAGS.port}  (temporary folder {temp_dir}; Ctrl-C stops)",
        flush=True)
  core.launch(context, FLAGS.port, FLAGS.host)
