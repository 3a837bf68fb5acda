"""Official MCNet (PyTorch) state dicts <-> our Flax variables, and model-config inference from shapes.

The official generator names memory-unit layers by feature width w (feat_forward_proj_{w}, conv_{w},
norm_{w}); ours name them by decoder level l, with w = image_size / 2**l.
"""
from __future__ import annotations

import pathlib
import zipfile
import re
from typing import Mapping

import jax
import ml_collections
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from data_pipelines.user_errors import UserInputError, existing_file
from talkingmem.mcnet.config import model_config
from talkingmem.nn.antialias import gaussian_kernel

Array = np.ndarray
MODULES = ("kp_detector", "generator")


class StateDictMismatch(UserInputError):
  """A state dict that cannot be mapped fully onto the model."""


def _module_key(path: tuple[str, ...], image_size: int) -> str:
  """Official key (without the leaf suffix) for a Flax module path inside kp_detector or generator."""
  parts = []
  for name in path:
    if m := re.fullmatch(r"(encoder_down|decoder_up)_blocks_(\d+)", name):
      parts.append(f"{'encoder.down' if m[1] == 'encoder_down' else 'decoder.up'}_blocks.{m[2]}")
    elif m := re.fullmatch(r"(down_blocks|up_blocks|resblock)_(\d+)", name):
      parts.append(f"{m[1]}.{m[2]}")
    elif m := re.fullmatch(r"(feat_proj|out_conv|out_norm)_(\d+)", name):
      width = image_size // 2 ** int(m[2])
      parts.append({"feat_proj": "feat_forward_proj", "out_conv": "conv", "out_norm": "norm"}[m[1]] +
                   f"_{width}")
    elif name == "memory_unit":
      parts.append("mbUnit")
    elif name == "style_fc1":
      parts.append("style_route.0")
    elif name == "style_fc2":
      parts.append("style_route.2")
    else:
      parts.append(name)
  return ".".join(parts)


def _leaf(collection: str, path: tuple[str, ...], shape: tuple[int, ...], image_size: int
          ) -> tuple[str, callable, callable]:
  """(official key, to_flax(torch array), to_torch(flax array)) for one Flax variable."""
  module, leaf = path[:-1], path[-1]
  key = _module_key(module, image_size)
  ident = (lambda a: a, lambda a: a)
  conv = (lambda a: a.transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1))  # OIHW <-> HWIO
  dense = (lambda a: a.T, lambda a: a.T)
  squeeze_dense = (lambda a: a[:, :, 0, 0].T, lambda a: a.T[:, :, None, None])  # 1x1 conv as Dense
  if collection == "batch_stats":
    return f"{key}.{'running_mean' if leaf == 'mean' else 'running_var'}", *ident
  if module and module[-1] in ("fc1", "fc2") and leaf == "kernel":
    return f"{key}.weight", *squeeze_dense
  if module and module[-1] == "styleconv":
    special = {
        "weight": ("modulated_conv.weight", lambda a: a[0].transpose(2, 3, 1, 0),
                   lambda a: a.transpose(3, 2, 0, 1)[None]),
        "noise_strength": ("weight", *ident),
        "activation_bias": ("activate.bias", *ident),
    }
    name, f, g = special[leaf]
    return f"{key}.{name}", f, g
  if module and module[-1] == "modulation":
    key = key.replace("styleconv.modulation", "styleconv.modulated_conv.modulation")
    return f"{key}.{leaf}", *(dense if leaf == "weight" else ident)
  if module and module[-1] == "conv_kv":
    if leaf == "weight":
      return f"{key}.weight", lambda a: a.transpose(0, 3, 4, 2, 1), lambda a: a.transpose(0, 4, 3, 1, 2)
    return f"{key}.bias", *ident
  if leaf == "memory":
    return f"{key}.mb", lambda a: a.transpose(0, 2, 3, 1), lambda a: a.transpose(0, 3, 1, 2)
  if leaf == "kernel":
    return f"{key}.weight", *(conv if len(shape) == 4 else dense)
  if leaf == "scale":
    return f"{key}.weight", *ident
  return f"{key}.{leaf}", *ident


def _expected_buffers(config: ml_collections.ConfigDict) -> dict[str, dict[str, Array]]:
  """Non-learned official buffers: the anti-alias kernels, which we recompute from the scale."""
  out = {"kp_detector": {}, "generator": {}}
  for module, prefix, scale in (("kp_detector", "", config.kp_detector.scale_factor),
                                ("generator", "dense_motion_network.", config.dense_motion.scale_factor)):
    if scale != 1:
      k = gaussian_kernel(float(scale))
      out[module][f"{prefix}down.weight"] = np.tile(k[None, None], (config.num_channels, 1, 1, 1))
  return out


def _is_counter(key: str) -> bool:
  return key.endswith("num_batches_tracked")


def from_official(state_dicts: Mapping[str, Mapping[str, Array]], config: ml_collections.ConfigDict,
                  template: Mapping) -> dict:
  """Maps {'kp_detector': sd, 'generator': sd} onto a variables `template` (shapes from eval_shape).

  Refuses, naming every key, a state dict with missing, unexpected or wrongly shaped entries.
  """
  flat = flatten_dict(jax.tree.map(lambda x: x, dict(template)))
  result, missing, bad_shape = {}, [], []
  used = {m: set() for m in MODULES}
  for path, leaf in flat.items():
    collection, module = path[0], path[1]
    key, to_flax, _ = _leaf(collection, path[2:], tuple(leaf.shape), config.image_size)
    sd = state_dicts.get(module, {})
    if key not in sd:
      missing.append(f"{module}:{key}")
      continue
    value = to_flax(np.asarray(sd[key], np.float32))
    if value.shape != tuple(leaf.shape):
      bad_shape.append(f"{module}:{key} official {tuple(np.shape(sd[key]))} -> {value.shape}, "
                       f"model needs {tuple(leaf.shape)}")
      continue
    used[module].add(key)
    result[path] = value
  unexpected = []
  for module, buffers in _expected_buffers(config).items():
    for key, expected in buffers.items():
      sd = state_dicts.get(module, {})
      if key not in sd:
        missing.append(f"{module}:{key}")
      elif not np.allclose(np.asarray(sd[key]), expected, atol=1e-6):
        bad_shape.append(f"{module}:{key} differs from the anti-alias kernel of scale "
                         f"{config.kp_detector.scale_factor}; the scale factor in the config is wrong")
      used[module].add(key)
  for module in MODULES:
    unexpected += [f"{module}:{k}" for k in state_dicts.get(module, {})
                   if k not in used[module] and not _is_counter(k)]
  if missing or unexpected or bad_shape:
    lines = ["the official state dict does not map onto the model:"]
    for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad_shape)):
      if items:
        lines.append(f"  {title} ({len(items)}): " + ", ".join(sorted(items)))
    raise StateDictMismatch("\n".join(lines))
  return unflatten_dict(result)


def to_official(variables: Mapping, config: ml_collections.ConfigDict) -> dict[str, dict[str, Array]]:
  """Our variables -> {'kp_detector': sd, 'generator': sd} in the official layout (NCHW, torch names)."""
  out = {m: {} for m in MODULES}
  for path, value in flatten_dict(dict(variables)).items():
    collection, module = path[0], path[1]
    key, _, to_torch = _leaf(collection, path[2:], tuple(np.shape(value)), config.image_size)
    out[module][key] = np.asarray(to_torch(np.asarray(value)), np.float32)
    if collection == "batch_stats" and key.endswith("running_mean"):
      out[module][key.replace("running_mean", "num_batches_tracked")] = np.zeros((), np.float32)
  for module, buffers in _expected_buffers(config).items():
    out[module].update(buffers)
  return out


def _scale_from_kernel(kernel: Array | None) -> float:
  if kernel is None:
    return 1.0
  for k in range(1, 6):
    scale = 1.0 / 2 ** k
    ref = gaussian_kernel(scale)
    if ref.shape == kernel.shape[-2:] and np.allclose(ref, kernel[0, 0], atol=1e-6):
      return scale
  raise StateDictMismatch(f"anti-alias kernel of shape {kernel.shape} matches no scale 1/2^k")


def _count(sd: Mapping, pattern: str) -> int:
  return len({m[1] for k in sd if (m := re.match(pattern, k))})


def infer_config(state_dicts: Mapping[str, Mapping[str, Array]],
                 image_size: int | None = None) -> ml_collections.ConfigDict:
  """Reads every size of the model from tensor shapes; temperature/variance/scales keep defaults.

  The image size is read from the memory-unit layer names (largest width = image_size / 2); pass it
  for a state dict without memory.
  """
  kp, gen = state_dicts.get("kp_detector", {}), state_dicts.get("generator", {})
  for name, sd in (("kp_detector", kp), ("generator", gen)):
    if not sd:
      raise StateDictMismatch(f"no '{name}' state dict given")
  for key in ("kp.weight", "predictor.encoder.down_blocks.0.conv.weight"):
    if key not in kp:
      raise StateDictMismatch(f"kp_detector state dict has no {key!r}; is this an MCNet/FOMM keypoint detector?")
  for key in ("first.conv.weight", "dense_motion_network.mask.weight", "final.weight"):
    if key not in gen:
      raise StateDictMismatch(f"generator state dict has no {key!r}; is this an MCNet generator?")
  num_kp, in_ch = kp["kp.weight"].shape[0], kp["predictor.encoder.down_blocks.0.conv.weight"].shape[1]
  widths = sorted(int(m[1]) for k in gen if (m := re.fullmatch(r"mbUnit\.feat_forward_proj_(\d+)\.weight", k)))
  if widths:
    inferred = 2 * widths[-1]
    if image_size is not None and image_size != inferred:
      raise StateDictMismatch(f"memory layers are for image size {inferred}, not {image_size}")
    image_size = inferred
  if image_size is None:
    raise StateDictMismatch("cannot infer the image size from a state dict without memory; pass image_size")
  c = model_config(image_size)
  c.num_kp, c.num_channels = int(num_kp), int(in_ch)
  c.estimate_jacobian = "jacobian.weight" in kp

  def hourglass(sd: Mapping, prefix: str) -> dict:
    n = _count(sd, re.escape(prefix) + r"encoder\.down_blocks\.(\d+)\.conv\.weight")
    outs = [sd[f"{prefix}encoder.down_blocks.{i}.conv.weight"].shape[0] for i in range(n)]
    be = sd[f"{prefix}decoder.up_blocks.{n - 1}.conv.weight"].shape[0]
    return dict(block_expansion=int(be), max_features=int(max(outs)), num_blocks=int(n))

  c.kp_detector.update(hourglass(kp, "predictor."), scale_factor=_scale_from_kernel(kp.get("down.weight")))
  c.dense_motion.update(hourglass(gen, "dense_motion_network.hourglass."),
                        scale_factor=_scale_from_kernel(gen.get("dense_motion_network.down.weight")))
  n_down = _count(gen, r"down_blocks\.(\d+)\.conv\.weight")
  downs = [gen[f"down_blocks.{i}.conv.weight"].shape[0] for i in range(n_down)]
  c.generator.update(block_expansion=int(gen["first.conv.weight"].shape[0]), max_features=int(max(downs)),
                     num_down_blocks=int(n_down),
                     estimate_occlusion_map="dense_motion_network.occlusion.weight" in gen)
  c.use_memory = "mbUnit.mb" in gen
  if c.use_memory:
    mb = gen["mbUnit.mb"]
    c.memory.update(memory_channels=int(mb.shape[1]), memory_size=int(mb.shape[2]),
                    style_hidden=int(gen["mbUnit.style_route.0.weight"].shape[0]),
                    style_dim=int(gen["mbUnit.style_route.2.weight"].shape[0]),
                    num_kernels=int(gen["mbUnit.conv_kv.weight"].shape[0]))
    style_in = gen["mbUnit.style_route.0.weight"].shape[1]
    if style_in != mb.shape[1] + 2 * num_kp:
      raise StateDictMismatch(f"style_route input {style_in} != memory channels {mb.shape[1]} + 2 x {num_kp} "
                              "keypoints")
  return c


def strip_prefix(state_dict: Mapping[str, Array], prefix: str = "module.") -> dict[str, Array]:
  return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}


def read_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
  """Every array of an .npz; a damaged or foreign file is a StateDictMismatch naming it."""
  try:
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise StateDictMismatch(f"{path} is not a readable .npz ({type(e).__name__}: {e}); "
                            "write or convert it again") from e


def load_state_dicts(path: str | pathlib.Path, generator_path: str | pathlib.Path | None = None
                     ) -> dict[str, dict[str, Array]]:
  """Reads official weights: a released `.pth.tar` (dict with 'generator' and 'kp_detector', keys maybe
  prefixed 'module.'), one `.npz` with 'kp_detector/…' and 'generator/…' keys, or two `.npz` files
  (kp detector, generator) of key -> array."""
  path = existing_file(path, "--checkpoint")
  if generator_path is not None:
    kp = read_npz(path)
    gen = read_npz(existing_file(generator_path, "--generator_checkpoint"))
    return {"kp_detector": strip_prefix(kp), "generator": strip_prefix(gen)}
  if path.suffix == ".npz":
    flat = read_npz(path)
    out = {m: {} for m in MODULES}
    for k, v in flat.items():
      module, _, rest = k.partition("/")
      if module not in out:
        raise StateDictMismatch(f"{path}: key {k!r} is not 'kp_detector/…' or 'generator/…'")
      out[module][rest] = v
    return {m: strip_prefix(sd) for m, sd in out.items()}
  from talkingmem.torch_io import load_torch_file  # torch-free reader
  checkpoint = load_torch_file(path)
  if not isinstance(checkpoint, Mapping) or not all(m in checkpoint for m in MODULES):
    keys = list(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
    raise StateDictMismatch(f"{path} holds {keys}; an MCNet checkpoint has 'generator' and 'kp_detector'")
  return {m: strip_prefix({k: np.asarray(v) for k, v in checkpoint[m].items()}) for m in MODULES}


def save_npz(state_dicts: Mapping[str, Mapping[str, Array]], path: str | pathlib.Path) -> None:
  """One `.npz` with 'kp_detector/<key>' and 'generator/<key>' entries (readable by load_state_dicts)."""
  flat = {f"{m}/{k}": v for m, sd in state_dicts.items() for k, v in sd.items()}
  np.savez(path, **flat)
