"""The browser app's frame: tabs by module name, the temporary folder, upload checks, errors as messages.

Shared code never imports a paper, so the tabs are named here by module (as main.MODES does) and
imported when the app is built: each tab module has `build(context)` that lays out its gradio
components inside the open `gr.Tab`. Requests read and write only inside `context.temp_dir`: gradio
keeps uploads there (GRADIO_TEMP_DIR), and every result goes to a fresh folder below it.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import pathlib
import tempfile
from typing import Any, Callable

from absl import logging

# Tab title -> module with build(context); imported only when the app is built.
TABS = {
    "Animate": "talkingmem.mcnet.app_animate",
    "Speak": "talkingmem.memface.app_speak",
    "Memory": "talkingmem.mcnet.app_memory",
}


class AppInputError(ValueError):
  """A request the app cannot serve; the message is shown in the page."""


@dataclasses.dataclass(frozen=True)
class AppContext:
  """What the app serves: models and speakers chosen at start-up, never paths typed in a request."""
  temp_dir: pathlib.Path
  models: tuple[str, ...] = ()  # training workdirs or official .pth.tar files
  a2e_workdir: str | None = None
  renderer_workdir: str | None = None
  speakers: tuple[str, ...] = ()  # prepare_speaker folders
  max_upload_mb: int = 50
  max_frames: int = 500  # driving frames per request (CPU time)
  cache: dict = dataclasses.field(default_factory=dict)  # loaded models by name

  def request_dir(self) -> pathlib.Path:
    """A fresh folder for one request's outputs, inside the app's temporary folder."""
    results = self.temp_dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    return pathlib.Path(tempfile.mkdtemp(dir=results))

  def upload(self, path: str | None, what: str) -> pathlib.Path:
    """An uploaded file's path, checked to be one of the app's own uploads and within the size limit."""
    if not path:
      raise AppInputError(f"no {what} given: upload one")
    resolved = pathlib.Path(path).resolve()
    if not resolved.is_relative_to(self.temp_dir.resolve()) or not resolved.is_file():
      raise AppInputError(f"the {what} must be uploaded through the page")
    if resolved.stat().st_size > self.max_upload_mb * 2**20:
      raise AppInputError(f"the {what} is larger than {self.max_upload_mb} MB: upload a smaller file")
    return resolved

  def choice(self, value: str | None, options: tuple[str, ...], what: str) -> str:
    """`value` if it is one of the options the app was started with."""
    if value not in options:
      raise AppInputError(f"choose a {what} from the list" if options else
                          f"no {what} configured: restart the app with one (see --help)")
    return value


def prepare_environment(temp_dir: pathlib.Path) -> None:
  """No analytics, no share links, no downloads at run time; uploads in our temp folder."""
  os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
  os.environ["HF_HUB_OFFLINE"] = "1"
  os.environ["GRADIO_TEMP_DIR"] = str(temp_dir / "uploads")
  (temp_dir / "uploads").mkdir(parents=True, exist_ok=True)


def shown_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
  """Any failure of a request becomes one message in the page (gr.Error), and the app keeps serving.

  The traceback goes to the log file for whoever runs the app, never to the page.
  """
  import gradio as gr  # pylint: disable=g-import-not-at-top

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except gr.Error:
      raise
    except Exception as e:  # pylint: disable=broad-except  (a request must never take the app down)
      logging.exception("request failed")
      message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise gr.Error(message, print_exception=False) from None

  return wrapped


def build_app(context: AppContext, tabs: dict[str, str] = TABS):
  """The gradio Blocks with one tab per entry of `tabs`."""
  import gradio as gr  # pylint: disable=g-import-not-at-top
  with gr.Blocks(title="talkingmem", analytics_enabled=False) as blocks:
    gr.Markdown("# talkingmem\nAnimate a photo by a video (MCNet), make a speaker talk (MemFace), "
                "and look at a model's memory.")
    for title, module in tabs.items():
      with gr.Tab(title):
        importlib.import_module(module).build(context)
  return blocks


def launch(context: AppContext, port: int, host: str = "127.0.0.1", block: bool = True):
  """Serves the app on host:port (local by default; never a share link); returns the gradio Blocks
  (`.close()` stops it when block=False)."""
  blocks = build_app(context)
  blocks.queue(default_concurrency_limit=1)  # one model run at a time: they use every core
  blocks.launch(server_name=host, server_port=port, share=False, inbrowser=False,
                       show_error=False, max_file_size=f"{context.max_upload_mb}mb",
                       allowed_paths=[str(context.temp_dir)], prevent_thread_lock=not block, quiet=True,
                       footer_links=["api"])
  return blocks
