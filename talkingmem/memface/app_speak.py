"""The app's Speak tab (MemFace): a speaker prepared at start-up and an uploaded audio file -> video."""
from __future__ import annotations

import pathlib

from talkingmem.app import core
from talkingmem.memface import speak


def speak_video(context: core.AppContext, speaker: str, audio: str | None) -> tuple[str, str]:
  if not (context.a2e_workdir and context.renderer_workdir):
    raise core.AppInputError("the Speak tab needs the app started with --a2e_workdir and --renderer_workdir")
  speaker = context.choice(speaker, context.speakers, "speaker")
  audio_path = context.upload(audio, "audio file")
  out = context.request_dir() / "speak.mp4"
  summary = speak.speak(context.a2e_workdir, context.renderer_workdir, audio_path, speaker, out)
  return str(out), f"{summary['frames']} frames; speaker {pathlib.Path(speaker).name}"


def build(context: core.AppContext) -> None:
  import gradio as gr  # pylint: disable=g-import-not-at-top
  ready = bool(context.a2e_workdir and context.renderer_workdir and context.speakers)
  if not ready:
    gr.Markdown("Start the app with `--a2e_workdir=A --renderer_workdir=R --speakers=DIR` "
                "(a `prepare_speaker` folder) to make a speaker talk here.")
  with gr.Row():
    with gr.Column():
      speaker = gr.Dropdown(list(context.speakers), value=context.speakers[0] if context.speakers else None,
                            label="Speaker")
      audio = gr.Audio(type="filepath", label="Speech", sources=["upload", "microphone"])
      button = gr.Button("Speak", interactive=ready)
    with gr.Column():
      video = gr.Video(label="Talking head")
      status = gr.Markdown()
  button.click(core.shown_errors(lambda s, a: speak_video(context, s, a)), [speaker, audio],
               [video, status], api_name="speak")
