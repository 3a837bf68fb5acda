"""experiments/benchmark_vs_official.py on the CPU: the official side's skip messages, a tiny run of ours."""
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "benchmark_vs_official.py"


def run_benchmark(tmp_path: pathlib.Path, *flags: str) -> subprocess.CompletedProcess:
  # One CPU device (the suite simulates 8, which a batch of 1 cannot be sharded over).
  env = dict(os.environ, XLA_FLAGS="", PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, str(SCRIPT), "--device=cpu", f"--out={tmp_path}",
                         f"--results_md={tmp_path / 'RESULTS.md'}", "--dtypes=float32", "--repeats=1",
                         *flags], capture_output=True, text=True, env=env, timeout=600)


def test_official_side_skipped_with_a_reason(tmp_path):
  no_repo = run_benchmark(tmp_path, "--official_repo=/nonexistent/mcnet", "--inference_batches=",
                          "--train_batches=")
  assert no_repo.returncode == 0, no_repo.stderr[-2000:]
  assert "official side skipped: --official_repo=/nonexistent/mcnet is not a checkout of ICCV2023-MCNET" \
      in no_repo.stdout
  fake = tmp_path / "repo"
  (fake / "modules").mkdir(parents=True)
  (fake / "modules" / "generator.py").write_text("")
  tiny = run_benchmark(tmp_path, f"--official_repo={fake}", f"--config={REPO / 'configs' / 'mcnet.py'}:tiny",
                       "--inference_batches=", "--train_batches=")
  assert "official side skipped: the official code only builds models with image_size 256" in tiny.stdout
  assert "Official side skipped" in (tmp_path / "RESULTS.md").read_text()


def test_tiny_config_ours_only(tmp_path):
  proc = run_benchmark(tmp_path, f"--config={REPO / 'configs' / 'mcnet.py'}:tiny", "--inference_batches=1",
                       "--train_batches=")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "official side skipped: no --official_repo given" in proc.stdout
  rows = [json.loads(line) for line in (tmp_path / "benchmark_vs_official.jsonl").read_text().splitlines()]
  assert [(r["side"], r["what"], r["batch"], r["dtype"], r["ok"]) for r in rows] == [
      ("ours", "inference", 1, "float32", True)]
  assert rows[0]["per_s"] > 0 and rows[0]["flops"] > 1e6 and 0 < rows[0]["mfu"] < 1
  table = (tmp_path / "RESULTS.md").read_text()
  assert "| inference | fp32 | 1 / — |" in table and "MFU against 0.332 TFLOP/s" in table
