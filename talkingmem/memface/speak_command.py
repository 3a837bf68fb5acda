"""`--mode=speak`: MemFace audio-driven inference with a speaker's template video.

  python -m talkingmem.main --mode=speak --a2e_workdir=A --renderer_workdir=R --audio=x.wav \
      --template=SPEAKER_DIR --output=out.mp4 [--memory=speaker_memory.npz] [--audio_features=f.npy]
"""
from __future__ import annotations

import json

from absl import flags
import ml_collections

from data_pipelines.user_errors import UserInputError, check_output

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("a2e_workdir", None, "Stage-1 (audio-to-expression) training workdir.")
  flags.DEFINE_string("renderer_workdir", None, "Stage-2 (neural renderer) training workdir.")
  flags.DEFINE_string("audio", None, "Audio file (any rate / channels; resampled to 16 kHz).")
  flags.DEFINE_string("audio_features", None, "Precomputed audio features for stage-1 models "
                      "trained on deepspeech / hubert / wav2vec / windows features.")
  flags.DEFINE_string("template", None, "The speaker's prepared folder (prepare_speaker output "
                      "or a synthetic clip folder with coeffs.npz and video.mp4 or frames/).")
  flags.DEFINE_string("output", None, "Output .mp4 (with the audio).")
  flags.DEFINE_string("memory", None, "The speaker's explicit memory .npz (default: built from "
                      "the template's frames).")
  flags.DEFINE_string("face_model", None, "3DMM .npz (default: face_model.npz beside the template).")
  flags.DEFINE_string("syncnet_weights", None, "syncnet_v2.model (or its .npz from "
                      "talkingmem.tools.convert_syncnet) to report Sync-C / Sync-D of the output.")


def run(config: ml_collections.ConfigDict | None) -> None:
  del config  # Each stage's config comes with its workdir.
  from talkingmem.memface import speak  # pylint: disable=g-import-not-at-top  (Orbax, the renderer)
  for name in ("a2e_workdir", "renderer_workdir", "audio", "template", "output"):
    if not getattr(FLAGS, name):
      raise UserInputError(f"--mode=speak needs --{name}")
  check_output(FLAGS.output, "--output", (FLAGS.audio, FLAGS.template, FLAGS.memory, FLAGS.audio_features,
                                          FLAGS.a2e_workdir, FLAGS.renderer_workdir), (".mp4",))
  summary = speak.speak(FLAGS.a2e_workdir, FLAGS.renderer_workdir, FLAGS.audio, FLAGS.template,
                        FLAGS.output, memory_path=FLAGS.memory, features_path=FLAGS.audio_features,
                        face_model=FLAGS.face_model,
                        options=speak.SpeakOptions(syncnet_weights=FLAGS.syncnet_weights))
  print(json.dumps(summary, indent=1))
