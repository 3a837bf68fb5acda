"""One command for a fresh GPU/TPU machine: install what is missing, then the checks a GPU user asks.

  python experiments/accelerator_check.py OUT_DIR [--official_repo=PATH] [--fixtures=DIR]
      [--train_fixtures=DIR] [--wheels=experiments/wheels] [--dry_run] [--small]
  python experiments/accelerator_check.py --download_wheels=3.12   # = make accelerator-wheels

Run from the repository root (it sets PYTHONPATH to it for every step). In order, each step with its
own time limit (about 8 minutes in all) and its output in OUT_DIR/<step>.log:
  install         pip-installs, from the wheels carried in --wheels (`make accelerator-wheels`), only the
                  packages this code imports that the machine lacks (no network needed)
  env             versions and devices -> OUT_DIR/env.json
  parity          official forward parity, our model in float32 on the device
  train_parity    the official training-step parity, where this checkout has it (skipped otherwise)
  benchmark       experiments/benchmark_vs_official.py at the paper's vox-256 model (official side with
                  --official_repo), JSON lines and the table into OUT_DIR
  input_pipeline  experiments/benchmark_input_pipeline.py at 256² with 16 worker processes
OUT_DIR/summary.json says, per step, the exit status, seconds and why a step was skipped.
--dry_run prints the plan and what would be installed; --small runs every step at test size (CPU).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import NamedTuple

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import results_file  # noqa: E402  (beside this script; standard library only, safe before the install step)

# Import name -> distribution the project needs that a JAX+torch GPU image may lack; versions from
# requirements.txt. TensorFlow, TFDS and CLU are left out on purpose: training reads folders without
# them and summaries fall back to metrics.jsonl (too large to carry: TensorFlow alone is ~600 MB).
CARRIED = {"grain": "grain", "array_record": "array_record", "ml_collections": "ml_collections",
           "cloudpickle": "cloudpickle", "portpicker": "portpicker", "imageio": "imageio",
           "psutil": "psutil", "yaml": "PyYAML", "einops": "einops", "absl": "absl-py"}
# Versions the suite ran with for the carried packages that requirements.txt does not pin (they come
# in as dependencies there).
DEPENDENCY_PINS = {"cloudpickle": "3.1.3", "portpicker": "1.6.0", "psutil": "7.2.2", "pyyaml": "6.0.4",
                   "einops": "0.8.2"}


class Step(NamedTuple):
  name: str
  command: list[str] | None  # None: skipped, `reason` says why
  timeout_s: int
  reason: str = ""


def pinned_versions(requirements: pathlib.Path = ROOT / "requirements.txt") -> dict[str, str]:
  """Distribution name (lower case, '_' as '-') -> pinned version."""
  pins = {}
  for line in requirements.read_text().splitlines():
    line = line.split("#")[0].strip()
    if "==" in line:
      name, version = line.split("==", 1)
      pins[name.strip().lower().replace("_", "-")] = version.strip()
  return pins


def requirement(dist: str) -> str:
  key = dist.lower().replace("_", "-")
  version = (pinned_versions() | DEPENDENCY_PINS).get(key)
  return f"{dist}=={version}" if version else dist


def download_command(wheels: pathlib.Path, python_version: str) -> list[str]:
  """`pip download` of every carried wheel for a Linux x86-64 machine with that Python."""
  platforms = [a for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
               for a in ("--platform", p)]
  return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
          python_version, *platforms, "-d", str(wheels), *(requirement(d) for d in CARRIED.values())]


def missing_distributions(carried: dict[str, str] = CARRIED) -> list[str]:
  return [dist for module, dist in carried.items() if importlib.util.find_spec(module) is None]


def install_command(missing: list[str], wheels: pathlib.Path) -> list[str] | None:
  if not missing:
    return None
  return [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--find-links", str(wheels),
          *(requirement(d) for d in missing)]


def train_parity_step(fixtures: pathlib.Path, timeout_s: int) -> Step:
  """The training-step parity command where this checkout has it."""
  module = "talkingmem.mcnet.tools.official_train_parity"
  if not fixtures.is_dir():
    return Step("train_parity", None, timeout_s, f"no training fixture folder at {fixtures}")
  if importlib.util.find_spec(module) is None:
    return Step("train_parity", None, timeout_s, f"{module} is not in this checkout")
  return Step("train_parity", [sys.executable, "-m", module, f"--fixtures={fixtures}"], timeout_s)


def plan(args: argparse.Namespace, out: pathlib.Path) -> list[Step]:
  py = sys.executable
  fixtures = pathlib.Path(args.fixtures)
  slow = 5 if args.small else 1  # time limits: --small runs on a (shared) CPU
  steps = [Step("env", [py, str(pathlib.Path(__file__).resolve()), "--env_only", str(out)], 120 * slow)]
  if (fixtures / "io.npz").is_file():
    steps.append(Step("parity", [py, "-m", "talkingmem.mcnet.tools.official_parity",
                                 f"--fixtures={fixtures}", "--dtype=float32"], 120 * slow))
  else:
    steps.append(Step("parity", None, 120, f"no forward fixture at {fixtures}"))
  steps.append(train_parity_step(pathlib.Path(args.train_fixtures), 120 * slow))
  bench = [py, str(ROOT / "experiments" / "benchmark_vs_official.py"), f"--out={out}",
           f"--results_md={out / 'RESULTS_side_by_side.md'}"]
  if args.official_repo:
    bench.append(f"--official_repo={args.official_repo}")
  if args.small:
    bench += ["--device=cpu", f"--config={ROOT / 'configs' / 'mcnet.py'}:tiny", "--inference_batches=1",
              "--train_batches=1", "--dtypes=float32", "--repeats=1"]
  else:
    bench += ["--inference_batches=1,64", "--train_batches=8,max", "--repeats=5"]
  steps.append(Step("benchmark", bench, 330 * slow))
  pipeline = [py, str(ROOT / "experiments" / "benchmark_input_pipeline.py"), "--formats=" + (
      "folders,mp4" if importlib.util.find_spec("imageio_ffmpeg") else "folders")]
  pipeline += (["--sizes=64", "--workers=2", "--batches=4", "--identities=2", "--frames=16"]
               if args.small else ["--sizes=256", "--workers=16"])
  steps.append(Step("input_pipeline", pipeline, 120 * slow))
  return steps


def write_json(path: pathlib.Path, payload: object) -> None:
  results_file.write_atomic(path, json.dumps(payload, indent=1, default=str))


def environment() -> dict:
  info: dict = {"python": sys.version.split()[0], "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
  for name in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "torch", "grain", "numpy"):
    try:
      info[name] = __import__(name, fromlist=["_"]).__version__
    except (ImportError, AttributeError) as e:
      info[name] = f"unavailable ({type(e).__name__})"
  import jax
  info["devices"] = [f"{d.platform}:{d.device_kind}" for d in jax.devices()]
  try:
    import torch
    info["torch_cuda"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
  except ImportError:
    pass
  return info


def run_step(step: Step, out: pathlib.Path, env: dict) -> dict:
  if step.command is None:
    print(f"[{step.name}] skipped: {step.reason}", flush=True)
    return {"status": "skipped", "reason": step.reason}
  print(f"[{step.name}] {' '.join(step.command)}", flush=True)
  t0 = time.perf_counter()
  with (out / f"{step.name}.log").open("w") as log:
    try:
      rc = subprocess.run(step.command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                          timeout=step.timeout_s).returncode
    except subprocess.TimeoutExpired:
      rc = "timeout"
  seconds = round(time.perf_counter() - t0, 1)
  print(f"[{step.name}] exit {rc} after {seconds} s (log: {out / (step.name + '.log')})", flush=True)
  return {"status": "ok" if rc == 0 else "failed", "exit": rc, "seconds": seconds}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("out", nargs="?", help="Folder for every result (created).")
  parser.add_argument("--official_repo", default=None, help="Checkout of harlanhong/ICCV2023-MCNET.")
  parser.add_argument("--fixtures", default=str(ROOT.parent / "shared" / "fixtures" / "mcnet_official"))
  parser.add_argument("--train_fixtures",
                      default=str(ROOT.parent / "shared" / "fixtures" / "mcnet_official_train"))
  parser.add_argument("--wheels", default=str(ROOT / "experiments" / "wheels"))
  parser.add_argument("--dry_run", action="store_true", help="Print the plan; run nothing.")
  parser.add_argument("--small", action="store_true", help="Test-size steps (CPU, for the test suite).")
  parser.add_argument("--env_only", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--download_wheels", metavar="PYTHON_VERSION", default=None,
                      help="Fill --wheels for a machine with this Python (e.g. 3.12), then stop; "
                           "`make accelerator-wheels` calls this.")
  args = parser.parse_args()
  if args.download_wheels:
    sys.exit(subprocess.run(download_command(pathlib.Path(args.wheels), args.download_wheels)).returncode)
  if not args.out:
    parser.error("OUT, the folder for the results, is required")
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  if args.env_only:
    write_json(out / "env.json", environment())
    return
  missing = missing_distributions()
  install = install_command(missing, pathlib.Path(args.wheels))
  steps = [Step("install", install, 120, "nothing missing")] + plan(args, out)
  if args.dry_run:
    for step in steps:
      print(f"[{step.name}] " + (" ".join(step.command) if step.command else f"skipped: {step.reason}"))
    return
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
  summary = {}
  for step in steps:
    summary[step.name] = run_step(step, out, env)
    write_json(out / "summary.json", summary)
  failed = [name for name, s in summary.items() if s["status"] == "failed"]
  print("all steps passed or skipped" if not failed else f"failed: {', '.join(failed)}", flush=True)
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  main()
