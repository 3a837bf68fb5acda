"""A hand count of MCNet's FLOPs per frame, cross-checked against XLA and the official figure.

  python experiments/flops_hand_count.py                      # official vox-256 config, with XLA check
  python experiments/flops_hand_count.py --config=configs/mcnet.py:demo
  python experiments/flops_hand_count.py --noxla              # the hand count only (no compile)

Counted as torch's flop counter does (the official ~392.6 GFLOP per 256x256 frame for the generator):
2 FLOPs per multiply-accumulate of every convolution and matmul (including the memory unit's attention
matmuls and the per-sample StyleConv / dynamic convs), nothing for grid_sample, softmax, norms,
activations, resizes or the anti-aliasing blur. The blur is listed apart, so that XLA's count (which
includes every elementwise op, the blur as a strided depthwise conv and the bilinear resizes as matmuls)
can be compared. Every size comes from the config (talkingmem/mcnet/config.py), as in the model code.
Prints a breakdown by part and one JSON line with the totals.
"""
from __future__ import annotations

import collections
import json

from absl import app, flags
from ml_collections import config_flags

from talkingmem.mcnet.generator import decoder_channels, encoder_channels, memory_levels
from talkingmem.nn.antialias import gaussian_kernel
from talkingmem.nn.blocks import hourglass_channels

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/mcnet.py", "Config file (`path.py:variant`).")
flags.DEFINE_bool("xla", True, "Also compile the model and print XLA's cost analysis (slow at 256x256).")
flags.DEFINE_float("official_gflops", 392.6, "The official generator's GFLOPs per 256x256 frame "
                   "(torch.utils.flop_counter), compared when the image size is 256.")


def _valid_taps(n: int, k: int, pad: int) -> int:
  """Sum over the output positions of a 1-D stride-1 conv of the kernel taps that land inside the input."""
  return sum(sum(0 <= o - pad + t < n for t in range(k)) for o in range(n + 2 * pad - k + 1))


class Counter:
  """MACs per (part, layer), as torch counts them (every tap) and without the taps on zero padding
  (what XLA's cost analysis counts for a convolution); FLOPs = 2 x MACs."""

  def __init__(self):
    self.macs: dict[str, collections.OrderedDict] = collections.defaultdict(collections.OrderedDict)
    self.valid: dict[str, collections.OrderedDict] = collections.defaultdict(collections.OrderedDict)

  def add(self, part: str, name: str, macs: float, valid: float | None = None) -> None:
    self.macs[part][name] = self.macs[part].get(name, 0.0) + float(macs)
    self.valid[part][name] = self.valid[part].get(name, 0.0) + float(macs if valid is None else valid)

  def conv(self, part: str, name: str, n: int, k: int, cin: int, cout: int, pad: int | None = None) -> None:
    """A k x k stride-1 conv on an (n, n) input with `pad` zero padding (default k // 2: same size)."""
    pad = k // 2 if pad is None else pad
    out = n + 2 * pad - k + 1
    self.add(part, name, out * out * k * k * cin * cout, _valid_taps(n, k, pad) ** 2 * cin * cout)

  def gflops(self, part: str | None = None, valid: bool = False) -> float:
    table = self.valid if valid else self.macs
    parts = [part] if part else list(table)
    return sum(2 * m for p in parts for m in table[p].values()) / 1e9


def _down_size(image_size: int, scale: float) -> int:
  return int(round(image_size * scale))


def hourglass(c: Counter, part: str, prefix: str, size: int, be: int, cin: int, mf: int, nb: int) -> int:
  """Convs of a FOMM hourglass on a (size, size, cin) input; returns its output channels."""
  down, up = hourglass_channels(be, cin, mf, nb)
  skips, res, ch = [cin], size, cin
  for i, f in enumerate(down):  # conv 3x3 at the input resolution, then 2x2 average pool
    c.conv(part, f"{prefix}.down{i} {ch}->{f} @{res}", res, 3, ch, f)
    ch, res = f, res // 2
    skips.append(f)
  skips.pop()
  for i, f in enumerate(up):  # nearest x2, conv 3x3, then concat with the skip
    res *= 2
    c.conv(part, f"{prefix}.up{i} {ch}->{f} @{res}", res, 3, ch, f)
    ch = f + skips.pop()
  return ch


def blur(c: Counter, part: str, name: str, image_size: int, channels: int, scale: float) -> None:
  """The anti-aliasing Gaussian blur as the official code runs it: depthwise, at full resolution."""
  if scale != 1.0:
    k = gaussian_kernel(float(scale)).shape[0]
    c.add(part, name, image_size * image_size * k * k * channels)


def count(model) -> tuple[Counter, Counter]:
  """(torch-style count by part, the anti-aliasing blurs) for one frame of `model` (a ConfigDict)."""
  c, extra = Counter(), Counter()
  size, ch_img, k = model.image_size, model.num_channels, model.num_kp

  kd = model.kp_detector
  r = _down_size(size, kd.scale_factor)
  blur(extra, "kp_detector", "blur", size, ch_img, kd.scale_factor)
  out = hourglass(c, "kp_detector", "hourglass", r, kd.block_expansion, ch_img, kd.max_features,
                  kd.num_blocks)
  ro = r - 6 + 2 * kd.pad  # 7x7 heads with `pad` padding
  c.conv("kp_detector", f"kp 7x7 {out}->{k} @{ro}", r, 7, out, k, kd.pad)
  if model.estimate_jacobian:
    c.conv("kp_detector", f"jacobian 7x7 {out}->{4 * k} @{ro}", r, 7, out, 4 * k, kd.pad)

  g, dm = model.generator, model.dense_motion
  rd = _down_size(size, dm.scale_factor)
  blur(extra, "dense_motion", "blur", size, ch_img, dm.scale_factor)
  cin = (k + 1) * (ch_img + 1)
  out = hourglass(c, "dense_motion", "hourglass", rd, dm.block_expansion, cin, dm.max_features,
                  dm.num_blocks)
  c.conv("dense_motion", f"mask 7x7 {out}->{k + 1} @{rd}", rd, 7, out, k + 1)
  c.add("dense_motion", "deformation einsum", rd * rd * (k + 1) * 2)
  if g.estimate_occlusion_map:
    c.conv("dense_motion", f"occlusion 7x7 {out}->1 @{rd}", rd, 7, out, 1)

  enc = encoder_channels(g.block_expansion, g.max_features, g.num_down_blocks)
  c.conv("down", f"first 7x7 {ch_img}->{enc[0]} @{size}", size, 7, ch_img, enc[0])
  for i in range(g.num_down_blocks):
    res = size >> i
    c.conv("down", f"down{i} {enc[i]}->{enc[i + 1]} @{res}", res, 3, enc[i], enc[i + 1])

  if model.use_memory:
    m = model.memory
    mc, s = m.memory_channels, m.memory_size
    for level in memory_levels(g.num_down_blocks):
      res, half = size >> level, enc[level] // 2
      p = f"memory unit L{level} @{res}"
      c.conv("memory_unit", f"{p}: feat_proj 1x1 {half}->{mc}", res, 1, half, mc)
      c.add("memory_unit", f"{p}: style MLP", (mc + 2 * k) * m.style_hidden + m.style_hidden * m.style_dim)
      c.add("memory_unit", f"{p}: StyleConv modulation", m.style_dim * mc)
      c.conv("memory_unit", f"{p}: StyleConv 3x3 {mc}->{mc} @{s}", s, 3, mc, mc)
      hidden = int(mc * 0.25) + 1
      c.add("memory_unit", f"{p}: dynamic-conv attention MLP + kernel mix",
            mc * hidden + hidden * m.num_kernels + m.num_kernels * 9 * mc * 2 * mc)
      c.conv("memory_unit", f"{p}: dynamic conv 3x3 {mc}->{2 * mc} @{s}", s, 3, mc, 2 * mc)
      c.conv("memory_unit", f"{p}: query 1x1", res, 1, mc, mc)
      c.add("memory_unit", f"{p}: attention q.k^T ({res * res}x{s * s})", res * res * s * s * mc)
      c.add("memory_unit", f"{p}: attention p.v", res * res * s * s * mc)
      c.conv("memory_unit", f"{p}: diff 1x1", res, 1, mc, mc)
      c.conv("memory_unit", f"{p}: out 3x3 {mc}->{half}", res, 3, mc, half)

  for i, (_, features) in enumerate(decoder_channels(enc)):
    level = g.num_down_blocks - i
    res = size >> level
    ch = enc[level] if i == 0 else 2 * enc[level]
    for j in (2 * i, 2 * i + 1):
      for _ in range(2):  # conv1, conv2
        c.conv("resblocks", f"resblock{j} 2x 3x3 {ch}->{ch} @{res}", res, 3, ch, ch)
    c.conv("up", f"up{i} {ch}->{features} @{2 * res}", 2 * res, 3, ch, features)
  c.conv("up", f"final 7x7 {enc[0]}->{ch_img} @{size}", size, 7, enc[0], ch_img)
  return c, extra


GENERATOR_PARTS = ("memory_unit", "resblocks", "up", "down", "dense_motion")


def main(argv):
  del argv
  model = FLAGS.config.model
  c, extra = count(model)
  print(f"MCNet hand count at {model.image_size}x{model.image_size}, {model.num_kp} keypoints, "
        f"memory={model.use_memory}. GFLOPs per frame = 2 x MACs: every tap (torch's flop counter) | "
        "without taps on zero padding (XLA's convention)")
  parts = GENERATOR_PARTS + ("kp_detector",)
  for part in parts:
    print(f"\n{part}: {c.gflops(part):.3f} | {c.gflops(part, valid=True):.3f} GFLOP")
    for name, macs in c.macs[part].items():
      print(f"  {name:<60s} {2 * macs / 1e9:9.4f} | {2 * c.valid[part][name] / 1e9:9.4f}")
  gen = sum(c.gflops(p) for p in GENERATOR_PARTS)
  gen_valid = sum(c.gflops(p, valid=True) for p in GENERATOR_PARTS)
  kp, kp_valid = c.gflops("kp_detector"), c.gflops("kp_detector", valid=True)
  blur_gen, blur_kp = extra.gflops("dense_motion"), extra.gflops("kp_detector")
  result = {"image_size": model.image_size,
            "hand_gflops": {p: round(c.gflops(p), 4) for p in parts},
            "hand_gflops_no_padding_taps": {p: round(c.gflops(p, valid=True), 4) for p in parts},
            "hand_generator_gflops": round(gen, 3), "hand_kp_detector_gflops": round(kp, 3),
            "antialias_blur_gflops": {"dense_motion": round(blur_gen, 4), "kp_detector": round(blur_kp, 4)}}
  print(f"\ngenerator (hand): {gen:.2f} GFLOP (+ {blur_gen:.3f} for the full-resolution blur); "
        f"{gen_valid:.2f} without padding taps")
  print(f"kp detector (hand): {kp:.3f} GFLOP (+ {blur_kp:.3f} blur); {kp_valid:.3f} without padding taps")
  if model.image_size == 256:
    result["official_generator_gflops"] = FLAGS.official_gflops
    result["hand_plus_blur_vs_official"] = round((gen + blur_gen) / FLAGS.official_gflops - 1, 5)
    print(f"official (torch flop counter): {FLAGS.official_gflops} GFLOP; (hand + blur) / official - 1 = "
          f"{result['hand_plus_blur_vs_official']:+.3%}")
  if FLAGS.xla:
    from talkingmem.mcnet.model_info import mcnet_info  # imported late: builds the model
    xla = mcnet_info(model, time_forward=False)["gflops_per_frame"]
    result["xla_gflops"] = {k: round(v, 3) for k, v in xla.items()}
    result["xla_minus_hand_no_padding_taps"] = {"generator": round(xla["generator"] - gen_valid, 3),
                                                "kp_detector": round(xla["kp_detector"] - kp_valid, 3)}
    print(f"XLA cost analysis: generator {xla['generator']:.2f}, kp detector {xla['kp_detector']:.3f} GFLOP; "
          f"minus the no-padding hand count: {xla['generator'] - gen_valid:+.2f}, "
          f"{xla['kp_detector'] - kp_valid:+.3f} GFLOP (elementwise ops, norms, softmax, grid_sample, "
          "resizes, blur)")
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main)
