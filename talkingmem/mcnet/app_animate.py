"""The app's Animate tab: a photo and a driving video (uploaded or recorded) -> the animation.

Laid out by `talkingmem.app.core.build_app` (named in its TABS table); the work is `animate.animate`.
"""
from __future__ import annotations

import pathlib

import numpy as np

from data_pipelines import video_io
from talkingmem.app import core
from talkingmem.mcnet import animate


def loaded_model(context: core.AppContext, name: str) -> animate.LoadedModel:
  """A model the app was started with (a workdir or an official .pth.tar), loaded once."""
  name = context.choice(name, context.models, "model")
  if name not in context.cache:
    path = pathlib.Path(name)
    context.cache[name] = (animate.load_model(workdir=path) if path.is_dir()
                           else animate.load_model(checkpoint=path))
  return context.cache[name]


def side_by_side(photo_path: pathlib.Path, driving_path: pathlib.Path, result_path: pathlib.Path,
                 out: pathlib.Path, fps: float) -> None:
  """photo | driving | result, each at the result's height (the driving video's whole frames)."""
  result = video_io.read_video(result_path)
  h, w = result.shape[1:3]
  photo = animate.to_uint8(animate.square_resize(animate.read_image(photo_path), h))
  driving = video_io.read_video(driving_path, size=(h, h))[:len(result)]
  frames = np.concatenate([np.broadcast_to(photo, (len(result), h, h, 3)), driving, result], axis=2)
  video_io.write_video(out, frames, fps=fps)


def run_animation(context: core.AppContext, photo: str | None, driving: str | None, model: str,
                  motion: str, adapt_scale: bool, reference: str, frame: float | None, crop: bool,
                  paste: bool) -> tuple[str, str, str]:
  """(result mp4, side-by-side mp4, status line) for one request."""
  photo_path = context.upload(photo, "photo")
  driving_path = context.upload(driving, "driving video")
  frames = video_io.video_info(driving_path).get("frames") or 0
  if frames > context.max_frames:
    raise core.AppInputError(f"the driving video has {frames} frames; the app takes at most "
                             f"{context.max_frames}: upload a shorter clip")
  loaded = loaded_model(context, model)
  options = animate.AnimateOptions(
      crop=crop, relative=motion == "relative", adapt_scale=adapt_scale,
      best_frame=int(frame or 0) if reference == "number" else None,
      find_best_frame=reference == "best", paste_back=paste, progress=True)
  out = context.request_dir()
  summary = animate.animate(loaded, photo_path, driving_path, out / "result.mp4", options)
  side_by_side(photo_path, driving_path, out / "result.mp4", out / "side_by_side.mp4", summary["fps"])
  h, w = summary["output_size"]
  status = (f"{summary['frames']} frames at {summary['fps']:g} fps, {w}x{h}"
            f"{', with the driving audio' if summary['audio'] else ''}; reference frame "
            f"{summary['reference_frame']}; model {pathlib.Path(model).name}")
  return str(out / "result.mp4"), str(out / "side_by_side.mp4"), status


def build(context: core.AppContext) -> None:
  import gradio as gr  # pylint: disable=g-import-not-at-top
  with gr.Row():
    with gr.Column():
      photo = gr.Image(type="filepath", label="Photo (a face)", sources=["upload"], elem_id="photo")
      driving = gr.Video(label="Driving video", sources=["upload", "webcam"], elem_id="driving")
      model = gr.Dropdown(list(context.models), value=context.models[0] if context.models else None,
                          label="Model")
      motion = gr.Radio(["relative", "absolute"], value="relative", label="Motion")
      adapt_scale = gr.Checkbox(False, label="Adapt scale (keypoint hull areas)")
      with gr.Row():
        reference = gr.Radio(["first", "best", "number"], value="first", label="Reference frame")
        frame = gr.Number(0, label="Frame number", precision=0, minimum=0)
      crop = gr.Checkbox(True, label="Crop around the face")
      paste = gr.Checkbox(True, label="Paste back into the photo")
      button = gr.Button("Animate", variant="primary", elem_id="animate")
    with gr.Column():
      result = gr.Video(label="Result", elem_id="result", autoplay=True)
      side = gr.Video(label="Photo | driving | result", elem_id="side_by_side")
      status = gr.Markdown(elem_id="status")

  def on_click(*args, progress=gr.Progress(track_tqdm=True)):
    del progress  # gradio follows animate's tqdm bars
    return run_animation(context, *args)

  button.click(core.shown_errors(on_click), [photo, driving, model, motion, adapt_scale, reference, frame,
                                             crop, paste], [result, side, status], api_name="animate")
