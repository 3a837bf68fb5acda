"""Times the official MCNet PyTorch code; driven by experiments/benchmark_vs_official.py over stdin/stdout.

Runs in any Python that has torch (the project never depends on it): the benchmark starts it with
`--official_python` (default: its own interpreter). It imports the official modules from the checkout
given in the `setup` request and never copies their code; what the official code needs to run
outside its CUDA training set-up is applied at run time (`apply_runtime_shims`), the official files stay
unchanged. Protocol: one JSON request per stdin line, one JSON answer per stdout line (anything the
official code prints goes to stderr).

  {"op": "setup", "repo": PATH, "device": "cpu"|"cuda", "model": {...}, "train": {...}}
  {"op": "inference"|"train", "batch": B, "dtype": "float32"|"bfloat16", "repeats": N}
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
import types
from typing import Any

import numpy as np
import torch
from torch import nn

# The official repository's level names: the memory unit's layers are named after the feature width
# (32, 64, 128 at 256x256) and sized for the vox-256 channels 256 / 128 / 64.
MEMORY_LEVEL_NAMES = ("32", "64", "128")

# torchvision's VGG19 `features` layout (configuration "E"): channel counts, "M" = 2x2 max pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M")


def vgg19_without_download(*args: Any, **kwargs: Any) -> nn.Module:
  """VGG19 with random weights in torchvision's layout: the timing does not depend on the values and
  the device machine has no network (torchvision's `pretrained=True` would download)."""
  del args, kwargs
  layers: list[nn.Module] = []
  channels = 3
  for entry in VGG19_LAYOUT:
    if entry == "M":
      layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    else:
      layers += [nn.Conv2d(channels, entry, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
      channels = entry
  holder = nn.Module()
  holder.features = nn.Sequential(*layers)
  return holder


def gaussian_kernel_like_opencv(ksize: int, sigma: float, ktype: Any = None) -> np.ndarray:
  """cv2.getGaussianKernel's formula (sigma <= 0 derived from ksize), for machines without OpenCV."""
  del ktype
  if sigma <= 0:
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
  x = np.arange(ksize) - (ksize - 1) / 2
  kernel = np.exp(-x ** 2 / (2 * sigma ** 2))
  return (kernel / kernel.sum()).reshape(-1, 1)


def apply_runtime_shims(device: str) -> list[str]:
  """Makes the official modules importable and runnable here; returns what was done (for the log)."""
  done = []
  try:
    import torchvision.models as tv_models  # noqa: F401
    tv_models.vgg19 = vgg19_without_download
    done.append("torchvision.models.vgg19 -> random weights (no download)")
  except ImportError:
    models = types.ModuleType("torchvision.models")
    models.vgg19 = vgg19_without_download
    tv = types.ModuleType("torchvision")
    tv.models = models
    sys.modules.update({"torchvision": tv, "torchvision.models": models})
    done.append("torchvision absent: stand-in module with VGG19 features")
  try:
    import cv2  # noqa: F401
  except ImportError:
    sys.modules["cv2"] = types.SimpleNamespace(getGaussianKernel=gaussian_kernel_like_opencv)
    done.append("cv2 absent: getGaussianKernel stand-in")
  for name in ("torchdiffeq",):  # imported by modules/dense_motion.py, unused by the model we build
    try:
      __import__(name)
    except ImportError:
      stub = types.ModuleType(name)
      stub.odeint_adjoint = None
      sys.modules[name] = stub
      done.append(f"{name} absent: empty stand-in (unused)")
  if device == "cpu":
    # GeneratorFullModel calls .cuda() on two constant tensors (a Gaussian kernel, torch.eye).
    torch.Tensor.cuda = lambda self, *a, **k: self
    done.append("Tensor.cuda -> identity (CPU run)")
  return done


class ModuleHandle(nn.Module):
  """What DistributedDataParallel gives train.py: `.module` (GeneratorFullModel reads
  `generator.module.num_channels`) and a forward that calls the wrapped module."""

  def __init__(self, module: nn.Module):
    super().__init__()
    self.module = module

  def forward(self, *args, **kwargs):
    return self.module(*args, **kwargs)


def resize_memory_unit(unit: nn.Module, level_channels: dict[str, int], num_kp: int) -> None:
  """Rebuilds the memory unit's per-level layers for a model whose level widths differ from the
  hard-coded vox-256 ones (as the official fixtures do), so small configs compare like for like."""
  mb_channel = unit.mb.shape[1]
  for name, channels in level_channels.items():
    half = channels // 2
    if getattr(unit, f"channel_{name}") == half:
      continue
    setattr(unit, f"channel_{name}", half)
    setattr(unit, f"feat_forward_proj_{name}", nn.Conv2d(half, mb_channel, kernel_size=1, padding=0))
    setattr(unit, f"conv_{name}", nn.Conv2d(mb_channel, half, kernel_size=3, padding=1))
    setattr(unit, f"norm_{name}", nn.InstanceNorm2d(half, affine=True))
  if unit.style_route[0].in_features != mb_channel + 2 * num_kp:
    unit.style_route[0] = nn.Linear(mb_channel + 2 * num_kp, unit.style_route[0].out_features)


class OfficialMCNet:
  """The official KPDetector + Unet_Generator_keypoint_aware (+ GeneratorFullModel for training)."""

  def __init__(self, repo: str, device: str, model: dict, train: dict):
    sys.path.insert(0, repo)
    self.shims = apply_runtime_shims(device)
    from modules.generator import Unet_Generator_keypoint_aware
    from modules.keypoint_detector import KPDetector
    from modules.model import GeneratorFullModel
    self.full_model_class = GeneratorFullModel
    self.device = torch.device(device)
    common = dict(num_kp=model["num_kp"], num_channels=3, estimate_jacobian=True)
    self.kp_detector = KPDetector(**model["kp_detector"], **common)
    self.generator = Unet_Generator_keypoint_aware(
        **model["generator"], **common, num_bottleneck_blocks=6, dense_motion_params=model["dense_motion"],
        mbunit="ExpendMemoryUnit", mb_spatial=model["memory_size"], mb_channel=model["memory_channels"])
    gen = model["generator"]
    levels = {name: min(gen["max_features"], gen["block_expansion"] * 2 ** (gen["num_down_blocks"] - i))
              for i, name in enumerate(MEMORY_LEVEL_NAMES)}
    resize_memory_unit(self.generator.mbUnit, levels, model["num_kp"])
    self.kp_detector.to(self.device)
    self.generator.to(self.device)
    self.image_size = model["image_size"]
    self.train_params = train
    self.num_params = sum(p.numel() for m in (self.kp_detector, self.generator) for p in m.parameters())

  def _images(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shape = (batch, 3, self.image_size, self.image_size)
    return (torch.rand(shape, generator=gen).to(self.device), torch.rand(shape, generator=gen).to(self.device))

  def _autocast(self, dtype: str):
    if dtype == "float32":
      return contextlib.nullcontext()
    return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

  def inference_fn(self, batch: int, dtype: str):
    source, driving = self._images(batch)
    self.kp_detector.eval()
    self.generator.eval()

    def run():
      with torch.no_grad(), self._autocast(dtype):
        kp_source = self.kp_detector(source, isSource=True)
        kp_driving = self.kp_detector(driving)
        return self.generator(source, kp_source=kp_source, kp_driving=kp_driving)["prediction"]
    return run

  def train_fn(self, batch: int, dtype: str):
    """train.py's loop body: GeneratorFullModel losses, backward, clipping at 10 per module, two Adams."""
    source, driving = self._images(batch)
    self.kp_detector.train()
    self.generator.train()
    discriminator = ModuleHandle(nn.Identity())
    discriminator.module.scales = [1]  # read by GeneratorFullModel; never called with generator_gan 0
    full = self.full_model_class(self.kp_detector, ModuleHandle(self.generator), discriminator,
                                 self.train_params, None).to(self.device)
    lr = self.train_params["lr_generator"]
    optimizers = [torch.optim.Adam(m.parameters(), lr=lr, betas=(0.5, 0.999))
                  for m in (self.generator, self.kp_detector)]

    def run():
      with self._autocast(dtype):
        loss_values, _ = full({"source": source, "driving": driving})
      total = sum(v.float().mean() for v in loss_values.values())
      total.backward()
      for module in (self.generator, self.kp_detector):
        torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm=10)
      for opt in optimizers:
        opt.step()
        opt.zero_grad()
      return total
    return run


def synchronize(device: torch.device) -> None:
  if device.type == "cuda":
    torch.cuda.synchronize()


def measure(model: OfficialMCNet, request: dict) -> dict:
  """First call (warm-up, cuDNN autotuning) timed apart, then the median of `repeats` calls."""
  device = model.device
  if device.type == "cuda":
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
  make = model.train_fn if request["op"] == "train" else model.inference_fn
  fn = make(request["batch"], request["dtype"])
  t0 = time.perf_counter()
  fn()
  synchronize(device)
  first_s = time.perf_counter() - t0
  times = []
  for _ in range(request["repeats"]):
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    times.append(time.perf_counter() - t0)
  peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
  capacity = torch.cuda.mem_get_info()[1] if device.type == "cuda" else None
  return {"ok": True, "first_call_s": first_s, "step_s": float(np.median(times)), "peak_bytes": peak,
          "capacity_bytes": capacity}


def answer(request: dict, state: dict) -> dict:
  op = request.get("op")
  if op == "setup":
    torch.manual_seed(0)
    if request.get("threads"):
      torch.set_num_threads(int(request["threads"]))
    model = OfficialMCNet(request["repo"], request["device"], request["model"], request["train"])
    state["model"] = model
    return {"ok": True, "torch": torch.__version__, "shims": model.shims, "params": model.num_params,
            "cuda_device": torch.cuda.get_device_name() if model.device.type == "cuda" else None}
  if op in ("inference", "train"):
    try:
      return measure(state["model"], request)
    except torch.OutOfMemoryError as e:
      return {"ok": False, "oom": True, "error": str(e).splitlines()[0]}
    finally:
      if state["model"].device.type == "cuda":
        torch.cuda.empty_cache()
  return {"ok": False, "error": f"unknown op {op!r}"}


def main() -> None:
  replies = sys.stdout
  sys.stdout = sys.stderr  # the official code's prints must not corrupt the protocol
  state: dict = {}
  for line in sys.stdin:
    if not line.strip():
      continue
    request = json.loads(line)
    try:
      reply = answer(request, state)
    except Exception as e:  # reported to the benchmark, which prints it in one line and goes on
      reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    replies.write(json.dumps(reply, allow_nan=True) + "\n")
    replies.flush()


if __name__ == "__main__":
  main()
