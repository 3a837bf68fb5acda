"""The app's Memory tab: the loaded MCNet's meta-memory and the memory conditioned on a photo."""
from __future__ import annotations

from talkingmem.app import core
from talkingmem.mcnet.app_animate import loaded_model
from talkingmem.mcnet.tools import visualize_memory


def memory_picture(context: core.AppContext, model: str, photo: str | None, crop: bool) -> str:
  loaded = loaded_model(context, model)
  source = str(context.upload(photo, "photo")) if photo else None
  out = context.request_dir() / "memory.png"
  visualize_memory.write_memory_figure(loaded, out, source, crop=crop)
  return str(out)


def build(context: core.AppContext) -> None:
  import gradio as gr  # pylint: disable=g-import-not-at-top
  with gr.Row():
    with gr.Column():
      model = gr.Dropdown(list(context.models), value=context.models[0] if context.models else None,
                          label="Model")
      photo = gr.Image(type="filepath", label="Photo (optional): its scale-aware memory", sources=["upload"])
      crop = gr.Checkbox(True, label="Crop around the face")
      button = gr.Button("Show memory")
    picture = gr.Image(label="Memory", type="filepath")
  button.click(core.shown_errors(lambda m, p, c: memory_picture(context, m, p, c)), [model, photo, crop],
               picture, api_name="memory")
