"""MCNet's export builders (talkingmem/export.py writes them): the keypoint detector and one
animated frame, each a function (params, inputs) -> outputs with a symbolic batch dimension."""
from __future__ import annotations

import ml_collections

from talkingmem.export import BATCH, Artefact, Source, artefact, subtree
from talkingmem.mcnet.model import MCNet
from talkingmem.mcnet.normalize import normalize_kp


def _mcnet(config: ml_collections.ConfigDict):
  model_config = ml_collections.ConfigDict(config.model.to_dict())
  # Per-sample convs as one batched matmul: the grouped conv would need feature_group_count = b,
  # which a symbolic batch cannot give. Same result up to float rounding.
  model_config.conv_method = "im2col"
  return MCNet(model_config), MCNet


def _kp_inputs(prefix: str, config: ml_collections.ConfigDict) -> dict:
  k = int(config.model.num_kp)
  out = {f"{prefix}_value": ((BATCH, k, 2), "float32")}
  if config.model.estimate_jacobian:
    out[f"{prefix}_jacobian"] = ((BATCH, k, 2, 2), "float32")
  return out


def _kp(inputs: dict, prefix: str) -> dict:
  return {k: inputs[f"{prefix}_{k}"] for k in ("value", "jacobian") if f"{prefix}_{k}" in inputs}


@artefact("mcnet")
def mcnet_detect(source: Source) -> Artefact | None:
  params = subtree(source.variables, "kp_detector")
  if params is None:
    return None
  model, cls = _mcnet(source.config)
  size, channels = int(source.config.model.image_size), int(source.config.model.num_channels)

  def detect(params, inputs):
    kp = model.apply(params, inputs["image"], method=cls.detect)
    return {k: kp[k] for k in ("value", "jacobian") if k in kp}

  return Artefact("detect", detect, params, {"image": ((BATCH, size, size, channels), "float32")},
                  "keypoints of images in [0, 1]: value (x, y) in [-1, 1], jacobian")


@artefact("mcnet")
def mcnet_animate_frame(source: Source) -> Artefact | None:
  params = subtree(source.variables, "generator")
  if params is None:
    return None
  relative, adapt_scale = source.options.get("relative", True), source.options.get("adapt_scale", False)
  model, cls = _mcnet(source.config)
  size, channels = int(source.config.model.image_size), int(source.config.model.num_channels)
  inputs = {"source": ((BATCH, size, size, channels), "float32"), **_kp_inputs("kp_source", source.config),
            **_kp_inputs("kp_driving", source.config)}
  if relative:
    inputs.update(_kp_inputs("kp_initial", source.config))

  def animate_frame(params, inputs):
    kp_source, kp_driving = _kp(inputs, "kp_source"), _kp(inputs, "kp_driving")
    if relative:  # each batch element is its own request: one movement scale per element
      kp_driving = normalize_kp(kp_source, kp_driving, _kp(inputs, "kp_initial"),
                                adapt_movement_scale=adapt_scale, use_relative_movement=True,
                                use_relative_jacobian=True, scale_per_sample=True)
      kp_driving = {k: kp_driving[k] for k in ("value", "jacobian") if k in kp_driving}
    out = model.apply(params, inputs["source"], kp_source, kp_driving, method=cls.generate)
    return {"prediction": out["prediction"]}

  scaled = ", scaled by hull areas" if adapt_scale else ""
  motion = f"relative to kp_initial (the driving reference frame){scaled}" if relative else "absolute"
  return Artefact("animate_frame", animate_frame, params, inputs,
                  f"the source moved to the driving keypoints, motion {motion}: prediction in [0, 1]")
