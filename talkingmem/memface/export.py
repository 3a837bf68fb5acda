"""MemFace's export builders (talkingmem/export.py writes them): the audio-to-expression network
and the neural renderer's speak step (one frame per batch element, swappable speaker memory)."""
from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np

from data_pipelines.speech import explicit_memory
from talkingmem.export import BATCH, Artefact, Source, artefact
from talkingmem.memface import a2e, renderer


def a2e_window_shape(config: ml_collections.ConfigDict, params: dict) -> tuple[int, int]:
  """(W, D) of one audio window: D from the first conv, W from the config, checked against the
  flattened size the projection expects."""
  encoder = params["window_encoder"]
  convs = sorted(k for k in encoder if k.startswith("conv_"))
  dim = int(encoder[convs[0]]["kernel"].shape[1])
  window = int(config.data.get("feature_window", 16))
  length = window
  for _ in convs:
    length = -(-length // 2)
  want = int(encoder["proj"]["kernel"].shape[0])
  got = length * int(encoder[convs[-1]]["kernel"].shape[-1])
  if got != want:
    raise ValueError(f"audio windows of {window} frames do not fit the checkpoint's projection ({got} != "
                     f"{want} inputs); set config.data.feature_window in the workdir's config.json")
  return window, dim


@artefact("memface_a2e")
def memface_a2e(source: Source) -> Artefact:
  params = dict(source.variables)  # 'params', and the explicit-memory ablation's memory collection
  m = source.config.model.to_dict()
  m["conv_features"] = tuple(m.get("conv_features", (32, 32, 64, 64)))
  model = a2e.AudioToExpression(num_coeffs=int(params["params"]["head"]["kernel"].shape[-1]), **m)
  window, dim = a2e_window_shape(source.config, params["params"])
  frames = int(source.config.data.window)  # fixed: the positional table is built from a static length

  def audio_to_expression(params, inputs):
    return {"coeffs": model.apply(params, inputs["audio"], inputs["mask"])["coeffs"]}

  return Artefact("a2e", audio_to_expression, params,
                  {"audio": ((BATCH, frames, window, dim), "float32"), "mask": ((BATCH, frames), "bool")},
                  f"expression coefficients per video frame from audio windows "
                  f"({source.config.data.get('feature')} features standardised with the training "
                  "statistics); mask marks valid frames")


# ---------------------------------------------------------------------------------------------------
# MemFace neural renderer (the speak step: one frame per batch element).


@artefact("memface_renderer")
def memface_render_frame(source: Source) -> Artefact:
  """Renderer with ONE speaker's explicit memory among its parameters (the first training speaker's):
  serving another speaker = swapping the `memory` arrays of the params file for that speaker's .npz
  (data_pipelines.speech.explicit_memory.save_explicit_memory writes the same arrays)."""
  c = source.config.model
  variables = source.variables
  params = variables["params"]
  kind = str(c.get("memory", "explicit"))
  state = {k: v for k, v in variables.items() if k != "params"}
  weights = {"params": params.get("renderer", params)}  # The task keeps a discriminator beside it.
  memory = None
  if kind == "explicit":
    stacked = state["explicit_memory"]
    memory = {k: np.asarray(stacked[k])[0] for k in explicit_memory.ARRAYS if k != "frame_ids"}
  elif kind == "implicit":
    memory = {k: np.asarray(v) for k, v in state["memory_stats"].items()}
  model = renderer.NeuralRenderer(c)
  size = int(c.image_size)
  image = ((BATCH, size, size, 3), "float32")
  inputs = {"rendered": image, "masked": image}
  if memory is not None:  # The query width: memory keys, or the implicit variant's query statistics.
    inputs["query"] = ((BATCH, int(np.shape(memory["keys" if kind == "explicit" else "key_mean"])[-1])),
                       "float32")

  def render_frame(params, inputs):
    query = inputs.get("query", jnp.zeros(inputs["rendered"].shape[:1] + (1,), jnp.float32))
    image = model.apply(params["variables"], inputs["rendered"], inputs["masked"], query,
                        params.get("memory"))
    return {"prediction": image}

  params = {"variables": weights} if memory is None else {"variables": weights, "memory": memory}
  return Artefact("render_frame", render_frame, params, inputs,
                  "MemFace renderer: shaded face render + masked template frame (both in [0, 1]) and "
                  "the frame's mouth vertices (model space, flattened) -> frame in [0, 1]; memory "
                  f"{kind!r}")
