"""experiments/accelerator_check.py: what it installs, which steps it plans, and a GPU image's imports."""
import importlib.util
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "accelerator_check.py"


def load_check():
  spec = importlib.util.spec_from_file_location("accelerator_check", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_installs_only_missing_pinned_wheels(tmp_path):
  check = load_check()
  assert check.missing_distributions({"json": "json-dist", "no_such_module_xyz": "grain"}) == ["grain"]
  command = check.install_command(["grain", "ml_collections"], tmp_path)
  assert command[-2:] == ["grain==0.2.18", "ml_collections==1.1.0"]
  assert "--no-index" in command and str(tmp_path) in command
  assert check.install_command([], tmp_path) is None


def test_dry_run_plans_every_step(tmp_path):
  proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "out"), "--dry_run",
                         f"--train_fixtures={tmp_path / 'absent'}", "--official_repo=/x/mcnet"],
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert [line.split("]")[0] for line in lines] == [
      "[install", "[env", "[parity", "[train_parity", "[benchmark", "[input_pipeline"]
  assert f"[train_parity] skipped: no training fixture folder at {tmp_path / 'absent'}" in lines
  assert "--official_repo=/x/mcnet" in lines[4] and "--train_batches=8,max" in lines[4]
  assert "--sizes=256 --workers=16" in lines[5]


BLOCK_GPU_IMAGE_GAPS = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("tensorflow", "tensorflow_datasets", "clu"):
      raise ImportError(f"{name} is not on the GPU image")
sys.meta_path.insert(0, Absent())
import talkingmem.train, talkingmem.mcnet.task, talkingmem.mcnet.tools.official_parity, talkingmem.benchmarking
from talkingmem import summaries
writer = summaries.Writer(sys.argv[1])
writer.scalars(0, {"loss": 1.0})
writer.close()
print("imports ok")
"""


def test_code_imports_without_tensorflow_tfds_clu(tmp_path):
  """The H200 image has jax, flax, optax, orbax, torch, tensorboard but no TensorFlow, TFDS or CLU."""
  env = dict(os.environ, PYTHONPATH=str(REPO))
  proc = subprocess.run([sys.executable, "-c", BLOCK_GPU_IMAGE_GAPS, str(tmp_path)], capture_output=True,
                        text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "imports ok" in proc.stdout and "No TensorBoard summaries" in proc.stderr
  assert (tmp_path / "metrics.jsonl").read_text().count("loss") == 1
