"""Ours and the official MCNet PyTorch code side by side on one device, measurement by measurement.

  python experiments/benchmark_vs_official.py --official_repo=PATH/ICCV2023-MCNET --device=gpu \
      --out=results/                              # paper vox-256 model (configs/mcnet.py)
  python experiments/benchmark_vs_official.py --device=cpu --official_repo=PATH \
      --official_python=/work/venv_official/bin/python --config=configs/mcnet.py \
      --config.model.kp_detector.block_expansion=8 ...   # smaller sizes, see WORKSPACE.md

Measures inference (keypoints of source and driving + generator, frames/s) and one training step
(samples/s; the official GeneratorFullModel with the README's loss weights and train.py's clipping and
two Adams; ours with the official-form options: VGG19 perceptual loss on the 4-scale pyramid, the
zero-gradient keypoint distance, equivariance, memory consistency) in float32 and in bf16 (ours: bf16
compute with fp32 parameters; theirs: torch.autocast). Each (what, batch, dtype) runs ours then
theirs before the next; the "max" batch (largest that fits, extrapolated from the batch-8 footprint)
runs theirs first, after all fixed batches, so JAX's memory pool does not crowd out torch. Both sides
use random weights and inputs. MFU = XLA-counted FLOPs of our program (the same model) / time / peak.

The official side runs in `--official_python` (any Python with torch; default this one) through
experiments/official_mcnet_worker.py; without torch, a checkout or a compatible config it is skipped
with one line saying why. Output: JSON lines (stdout and OUT/benchmark_vs_official.jsonl) and a
Markdown table appended to --results_md (default experiments/RESULTS.md).
"""
from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU with the torch worker

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from talkingmem import benchmarking, sharding, train  # noqa: E402
from talkingmem.mcnet.model import MCNet  # noqa: E402
from talkingmem.nn import vgg  # noqa: E402
from talkingmem.task import get_task  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import results_file  # noqa: E402  (beside this script)

WORKER = HERE / "official_mcnet_worker.py"
FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", str(HERE.parent / "configs" / "mcnet.py"),
                                "Config file (`path.py:variant`); default: the paper's vox-256 model.")
flags.DEFINE_enum("device", None, ["cpu", "gpu", "tpu"], "Platform for both sides (default: JAX's).")
flags.DEFINE_string("official_repo", None, "Checkout of harlanhong/ICCV2023-MCNET (no copy is made).")
flags.DEFINE_string("official_python", sys.executable, "Python with torch for the official side.")
flags.DEFINE_list("inference_batches", ["1", "64"], "Inference batches (integers or 'max').")
flags.DEFINE_list("train_batches", ["8", "max"], "Training batches (integers or 'max').")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "float32 and/or bfloat16.")
flags.DEFINE_integer("repeats", 5, "Timed calls after the first (median reported).")
flags.DEFINE_float("peak_tflops", None, "Peak TFLOP/s for MFU (default: by device kind, see "
                   "talkingmem/benchmarking.py PEAK_FLOPS).")
flags.DEFINE_integer("max_batch_limit", 512, "Upper bound for a 'max' batch.")
flags.DEFINE_integer("threads", 0, "torch threads on the CPU (0: torch's default).")
flags.DEFINE_string("out", None, "Folder for the JSON lines (default: none, stdout only).")
flags.DEFINE_string("results_md", str(HERE / "RESULTS.md"), "Markdown file the table is appended to "
                    "('' to skip).")
flags.DEFINE_string("tag", "", "Label for the table heading and every JSON line.")

DTYPE_LABEL = {"float32": "fp32", "bfloat16": "bf16"}


class UserError(Exception):
  """Bad input: printed as one line, no traceback."""


# -- configuration -------------------------------------------------------------------------------
def official_form(config, vgg_path: str):
  """Our config with the official objective (README loss weights, zero-gradient kp distance)."""
  config = config.copy_and_resolve_references()
  config.loss.update(perceptual=10.0, vgg19_weights=vgg_path, equivariance_value=10.0,
                     equivariance_jacobian=10.0, kp_distance=10.0, kp_distance_official=True,
                     memory_consistency=10.0, generator_gan=0.0)
  return config


def write_random_vgg19(path: pathlib.Path) -> None:
  """VGG19 weights with random values (He scale): the loss's cost does not depend on them, and nothing
  is downloaded. Drawn with numpy: no compilation before the first measurement."""
  rng = np.random.default_rng(0)
  params = {vgg.param_name(index): {
      "kernel": (rng.standard_normal((3, 3, cin, cout)) * np.sqrt(2 / (9 * cin))).astype(np.float32),
      "bias": np.zeros(cout, np.float32)} for index, cin, cout in vgg.CONVS}
  np.savez(path, **vgg.flatten_params(params))


def official_incompatibility(model) -> str | None:
  """Why the official code cannot build this model, or None. Its generator hard-codes the memory
  levels 32/64/128 (a 256x256 image), three down blocks with max_features = 8 x block_expansion,
  a 512-dim style code with a 128 hidden layer, 4 dynamic-conv kernels and attention scale 1/4."""
  g, m = model.generator, model.memory
  checks = {
      "image_size 256": model.image_size == 256,
      "generator.num_down_blocks 3": g.num_down_blocks == 3,
      "generator.max_features = 8 x block_expansion": g.max_features == 8 * g.block_expansion,
      "memory.style_dim 512, style_hidden 128": (m.style_dim, m.style_hidden) == (512, 128),
      "memory.num_kernels 4, attention_scale 0.25": (m.num_kernels, m.attention_scale) == (4, 0.25),
      "model.use_memory": bool(model.use_memory),
  }
  missing = [name for name, ok in checks.items() if not ok]
  return ("the official code only builds models with " + ", ".join(missing)) if missing else None


def official_model_params(config) -> tuple[dict, dict]:
  """Our config as the official constructor arguments and train_params (vox-256.yaml layout)."""
  m, loss = config.model, config.loss
  pick = lambda c, *names: {n: c[n] for n in names}  # noqa: E731
  model = {
      "image_size": m.image_size, "num_kp": m.num_kp,
      "kp_detector": pick(m.kp_detector, "block_expansion", "max_features", "num_blocks", "temperature",
                          "scale_factor"),
      "dense_motion": pick(m.dense_motion, "block_expansion", "max_features", "num_blocks", "scale_factor",
                           "kp_variance"),
      "generator": pick(m.generator, "block_expansion", "max_features", "num_down_blocks",
                        "estimate_occlusion_map"),
      "memory_size": m.memory.memory_size, "memory_channels": m.memory.memory_channels,
  }
  train_params = {
      "scales": list(loss.scales), "lr_generator": config.optim.learning_rate,
      "transform_params": {"sigma_affine": loss.sigma_affine, "sigma_tps": loss.sigma_tps,
                           "points_tps": loss.points_tps},
      "loss_weights": {"generator_gan": 0, "discriminator_gan": 1, "feature_matching": [10] * 4,
                       "perceptual": [loss.perceptual] * 5, "equivariance_value": loss.equivariance_value,
                       "equivariance_jacobian": loss.equivariance_jacobian, "l1": 0,
                       "kp_distance": loss.kp_distance, "feat_consistent": loss.memory_consistency},
  }
  return model, train_params


# -- the official side ---------------------------------------------------------------------------
class OfficialSide:
  """The worker process: one JSON request and answer per line."""

  def __init__(self, python: str, repo: str, device: str, config, threads: int):
    self.proc = subprocess.Popen([python, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
    model, train_params = official_model_params(config)
    self.info = self.ask({"op": "setup", "repo": repo, "device": device, "model": model,
                          "train": train_params, "threads": threads})
    if not self.info.get("ok"):
      self.close()
      raise RuntimeError(self.info.get("error", "the worker did not start"))

  def ask(self, request: dict) -> dict:
    self.proc.stdin.write(json.dumps(request) + "\n")
    self.proc.stdin.flush()
    line = self.proc.stdout.readline()
    if not line:
      return {"ok": False, "error": f"worker exited (code {self.proc.wait()})"}
    return json.loads(line)

  def close(self) -> None:
    if self.proc.poll() is None:
      self.proc.stdin.close()
      self.proc.wait(timeout=60)


def start_official(config) -> tuple[OfficialSide | None, str]:
  """The official side, or None and the reason it is skipped."""
  repo = FLAGS.official_repo
  if not repo:
    return None, "no --official_repo given"
  if not (pathlib.Path(repo) / "modules" / "generator.py").is_file():
    return None, f"--official_repo={repo} is not a checkout of ICCV2023-MCNET (no modules/generator.py)"
  if (reason := official_incompatibility(config.model)) is not None:
    return None, reason
  if jax.default_backend() == "tpu":
    return None, "torch does not run the official code on a TPU"
  probe = subprocess.run([FLAGS.official_python, "-c", "import torch, einops"], capture_output=True)
  if probe.returncode != 0:
    return None, (f"--official_python={FLAGS.official_python} cannot import torch and einops "
                  "(install them there, or point it at a Python that has them)")
  device = "cuda" if jax.default_backend() == "gpu" else "cpu"
  try:
    return OfficialSide(FLAGS.official_python, repo, device, config, FLAGS.threads), ""
  except (RuntimeError, OSError) as e:
    return None, f"the official code did not start: {e}"


# -- our side ------------------------------------------------------------------------------------
class OurSide:
  """Jitted inference and train step of our MCNet at the benchmark's config."""

  def __init__(self, config):
    self.config = config
    self.size = config.model.image_size
    self.mesh = sharding.make_mesh()
    self.fixed_bytes: dict[str, int] = {}

  def _batch(self, batch: int) -> dict:
    rng = np.random.default_rng(0)
    images = {k: rng.uniform(size=(batch, self.size, self.size, 3)).astype(np.float32)
              for k in ("source", "driving")}
    return sharding.global_batch(images, self.mesh)

  def measure(self, what: str, batch: int, dtype: str, repeats: int) -> dict:
    config = self.config.copy_and_resolve_references()
    config.train.compute_dtype = dtype
    config.data.batch_size = batch
    task = get_task(config)
    gbatch = self._batch(batch)
    if what == "train":
      fn, args, fixed = self._train_step(task, gbatch)
    else:
      fn, args, fixed = self._inference(task, gbatch, dtype)
    compiled, compile_s, flops, plan = benchmarking.compile_with_cost(fn, *args)
    self.fixed_bytes[what] = fixed
    holder = list(args)

    def call():
      out = compiled(*holder)
      if what == "train":  # the state is donated: thread it through
        holder[0], out = out[0], out[1]["loss"]
      return out

    _, first_s, step_s = benchmarking.timed(call, repeats=repeats)
    peak, capacity = benchmarking.device_memory()
    planned = plan.get("argument", 0) + plan.get("output", 0) - plan.get("alias", 0) + plan.get("temp", 0)
    return {"ok": True, "compile_s": compile_s, "first_call_s": first_s, "step_s": step_s,
            "flops": flops, "planned_bytes": planned or None, "peak_bytes": peak,
            "capacity_bytes": capacity}

  def _train_step(self, task, gbatch):
    tx, schedule = task.optimizer(1000)
    state = jax.jit(lambda b: train.create_train_state(task, tx, jax.random.PRNGKey(0), b),
                    out_shardings=sharding.replicated(self.mesh))(gbatch)
    step = jax.jit(train.make_train_step(task, tx, schedule, jax.random.PRNGKey(1)), donate_argnums=(0,))
    return step, (state, gbatch), benchmarking.tree_bytes(state) + benchmarking.tree_bytes(task.vgg_params)

  def _inference(self, task, gbatch, dtype):
    model = task.model
    first = gbatch["source"][:1]
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), first, first)
    cast = jnp.dtype(dtype)
    variables = jax.tree.map(lambda x: x.astype(cast) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                             variables)

    @jax.jit
    def animate(v, source, driving):
      kp_s = model.apply(v, source, method=MCNet.detect)
      kp_d = model.apply(v, driving, method=MCNet.detect)
      return model.apply(v, source, kp_s, kp_d, method=MCNet.generate)["prediction"]

    src, drv = gbatch["source"].astype(cast), gbatch["driving"].astype(cast)
    return animate, (variables, src, drv), benchmarking.tree_bytes(variables)


# -- the run -------------------------------------------------------------------------------------
def parse_batches(values: list[str], name: str) -> list[int | str]:
  out: list[int | str] = []
  for v in values:
    if v == "max" or (v.isdigit() and int(v) > 0):
      out.append(v if v == "max" else int(v))
    else:
      raise UserError(f"--{name}: {v!r} is neither a positive integer nor 'max'")
  return out


def is_oom(error: BaseException) -> bool:
  return "RESOURCE_EXHAUSTED" in str(error) or "out of memory" in str(error).lower()


def run_ours(ours: OurSide, what: str, batch: int, dtype: str) -> dict:
  try:
    return ours.measure(what, batch, dtype, FLAGS.repeats)
  except Exception as e:  # noqa: BLE001 - an OOM or a backend failure is a result, not a crash
    return {"ok": False, "oom": is_oom(e), "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}


def max_batch(side: str, what: str, results: dict, ours: OurSide, official: OfficialSide | None
              ) -> int | None:
  """The largest batch predicted to fit from this side's batch-8-or-smaller footprint."""
  known = [(b, r) for (s, w, b, d), r in results.items()
           if s == side and w == what and d == "float32" and isinstance(b, int) and r.get("ok")]
  if not known:
    return None
  batch, result = max(known, key=lambda item: item[0])
  used = result.get("planned_bytes") if side == "ours" else result.get("peak_bytes")
  capacity = result.get("capacity_bytes")
  if not used or not capacity:
    return None
  fixed = ours.fixed_bytes.get(what, 0) if side == "ours" else 4 * 4 * official.info["params"]
  return min(FLAGS.max_batch_limit, benchmarking.extrapolated_batch(capacity, fixed, used, batch))


def measure_side(side: str, what: str, batch: int, dtype: str, ours: OurSide,
                 official: OfficialSide | None) -> dict:
  if side == "ours":
    return run_ours(ours, what, batch, dtype)
  return official.ask({"op": what, "batch": batch, "dtype": dtype, "repeats": FLAGS.repeats})


def measure_max(side: str, what: str, dtype: str, results: dict, ours: OurSide,
                official: OfficialSide | None) -> tuple[int | None, dict]:
  """Tries the extrapolated batch, then 3/4 of it once if it ran out of memory."""
  batch = max_batch(side, what, results, ours, official)
  if batch is None:
    return None, {"ok": False, "error": "no device memory figures to extrapolate from (CPU?)"}
  result = measure_side(side, what, batch, dtype, ours, official)
  if not result.get("ok") and result.get("oom"):
    batch = max(1, batch * 3 // 4)
    result = measure_side(side, what, batch, dtype, ours, official)
  return batch, result


def record(side: str, what: str, batch: int | None, dtype: str, result: dict, base: dict,
           flops_per_sample: dict, peak: float | None) -> dict:
  row = base | {"side": side, "what": what, "batch": batch, "dtype": dtype} | result
  if result.get("ok") and batch:
    row["per_s"] = batch / result["step_s"]
    if side == "ours" and result.get("flops") == result.get("flops"):
      flops_per_sample[(what, dtype)] = result["flops"] / batch
    per_sample = flops_per_sample.get((what, dtype)) or flops_per_sample.get((what, "float32"))
    if per_sample and peak:
      row["mfu"] = per_sample * row["per_s"] / peak
  print(json.dumps(row, default=str), flush=True)
  return row


def versions(official: OfficialSide | None) -> str:
  import flax
  parts = [f"jax {jax.__version__}", f"jaxlib {jax.lib.__version__}" if hasattr(jax.lib, "__version__")
           else "", f"flax {flax.__version__}", f"Python {platform.python_version()}"]
  if official is not None:
    parts.append(f"torch {official.info['torch']} (official side)")
  return ", ".join(p for p in parts if p)


def fmt(value: Any, spec: str) -> str:
  return "—" if value is None else format(value, spec)


def gb(value: Any) -> str:
  return "—" if not value else f"{value / 1e9:.2f}"


def markdown(rows: list[dict], heading: str, peak: float | None) -> str:
  """One table row per (what, batch, dtype): ours and theirs next to each other."""
  table = [heading, "",
           f"MFU against {fmt(peak and peak / 1e12, '.3g')} TFLOP/s (XLA-counted FLOPs of our program for "
           "both sides); memory: ours = XLA's plan for the program, theirs = torch's peak allocation.", "",
           "| what | dtype | batch (ours / official) | ours /s | official /s | ours ÷ official | GFLOP / sample | "
           "MFU ours | MFU official | ours compile s | official first call s | memory GB ours / official |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  groups: dict = {}
  for r in rows:
    key = (r["what"], r["dtype"], r.get("slot"))
    groups.setdefault(key, {})[r["side"]] = r
  for (what, dtype, _), pair in groups.items():
    o, t = pair.get("ours", {}), pair.get("official", {})
    ratio = o["per_s"] / t["per_s"] if o.get("per_s") and t.get("per_s") else None
    flops = o.get("flops") and o.get("batch") and o["flops"] / o["batch"] / 1e9
    note = lambda r: r.get("error", "")[:60] if r and not r.get("ok") else ""  # noqa: E731
    table.append(
        f"| {'train step' if what == 'train' else 'inference'} | {DTYPE_LABEL[dtype]} | "
        f"{o.get('batch', '—')} / {t.get('batch', '—')} | {fmt(o.get('per_s'), '.3g')}{note(o)} | "
        f"{fmt(t.get('per_s'), '.3g')}{note(t)} | {fmt(ratio, '.2f')} | {fmt(flops, '.1f')} | "
        f"{fmt(o.get('mfu') and 100 * o['mfu'], '.1f')} % | {fmt(t.get('mfu') and 100 * t['mfu'], '.1f')} % | "
        f"{fmt(o.get('compile_s'), '.1f')} | {fmt(t.get('first_call_s'), '.1f')} | "
        f"{gb(o.get('planned_bytes'))} / {gb(t.get('peak_bytes'))} |")
  return "\n".join(table) + "\n"


def plan(inference: list, training: list, dtypes: list[str]) -> list[tuple[str, int | str, str]]:
  """Fixed batches first (both dtypes), then the 'max' ones."""
  items = [(w, b, d) for w, batches in (("inference", inference), ("train", training))
           for b in batches for d in dtypes]
  return [i for i in items if i[1] != "max"] + [i for i in items if i[1] == "max"]


def run(config) -> list[dict]:
  inference = parse_batches(FLAGS.inference_batches, "inference_batches")
  training = parse_batches(FLAGS.train_batches, "train_batches")
  for d in FLAGS.dtypes:
    if d not in DTYPE_LABEL:
      raise UserError(f"--dtypes: {d!r} is not float32 or bfloat16")
  device = jax.devices()[0]
  peak = FLAGS.peak_tflops * 1e12 if FLAGS.peak_tflops else benchmarking.peak_flops(
      device.device_kind, device.platform)
  official, reason = start_official(config)
  if official is None:
    print(f"official side skipped: {reason}", flush=True)
  ours = OurSide(config)
  base = {"device": device.device_kind, "platform": device.platform, "image_size": config.model.image_size,
          "num_kp": config.model.num_kp, "tag": FLAGS.tag, "date": time.strftime("%Y-%m-%d"),
          "peak_flops": peak}
  rows, results, flops_per_sample = [], {}, {}
  for slot, (what, batch, dtype) in enumerate(plan(inference, training, FLAGS.dtypes)):
    sides = ["ours", "official"] if batch != "max" else ["official", "ours"]
    for side in sides:
      if side == "official" and official is None:
        continue
      if batch == "max":
        size, result = measure_max(side, what, dtype, results, ours, official)
      else:
        size, result = batch, measure_side(side, what, batch, dtype, ours, official)
      results[(side, what, size, dtype)] = result
      rows.append(record(side, what, size, dtype, result, base, flops_per_sample, peak) | {"slot": slot})
      if FLAGS.out:  # row by row: a run cut short by a time limit keeps what it measured
        out = pathlib.Path(FLAGS.out)
        out.mkdir(parents=True, exist_ok=True)
        results_file.write_atomic(out / "benchmark_vs_official.jsonl",
                         "".join(json.dumps(r, default=str) + "\n" for r in rows))
  if official is not None:
    official.close()
  heading = (f"### {time.strftime('%Y-%m-%d')}, {device.device_kind} ({device.platform}), "
             f"{config.model.image_size}², {versions(official)}{', ' + FLAGS.tag if FLAGS.tag else ''}")
  if official is None:
    heading += f"\n\nOfficial side skipped: {reason}."
  table = markdown(rows, heading, peak)
  print(table)
  if FLAGS.out:
    results_file.write_atomic(pathlib.Path(FLAGS.out) / "benchmark_vs_official.md", table)
  if FLAGS.results_md:
    path = pathlib.Path(FLAGS.results_md)
    old = path.read_text() if path.exists() else ""
    results_file.write_atomic(path, old.rstrip("\n") + "\n\n" + table)
  return rows


def main(argv):
  del argv
  if FLAGS.device:
    jax.config.update("jax_platforms", FLAGS.device)
  try:
    with tempfile.TemporaryDirectory() as tmp:
      vgg_path = pathlib.Path(tmp) / "vgg19_random.npz"
      write_random_vgg19(vgg_path)
      run(official_form(FLAGS.config, str(vgg_path)))
  except UserError as e:
    sys.exit(f"benchmark_vs_official: {e}")


if __name__ == "__main__":
  app.run(main)
