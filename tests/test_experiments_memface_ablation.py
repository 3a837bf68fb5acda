"""The ablation runner's configs (equal steps, one ablation each, seeds) and its tables."""
from __future__ import annotations

import importlib.util
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ablation():
  spec = importlib.util.spec_from_file_location("memface_ablation",
                                                REPO / "experiments" / "memface_ablation.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("size", ["full", "medium", "smoke"])
def test_run_configs(ablation, size, tmp_path):
  for stage, runs in (("stage1", ablation.STAGE1_RUNS), ("stage2", ablation.STAGE2_RUNS)):
    configs = {run: ablation.run_config(stage, size, run, 7, tmp_path) for run in runs}
    assert len({c.train.num_steps for c in configs.values()}) == 1  # Equal steps.
    assert len({c.data.root for c in configs.values()}) == 1  # Same data.
    assert all(c.seed == 7 and c.data.seed == 7 for c in configs.values())
    if stage == "stage1":
      assert configs["no_memory"].model.memory == "none"
      assert configs["explicit"].model.memory == "explicit"
      assert [configs[f"implicit_N{n}"].model.memory_slots for n in (250, 500, 1000)] == [
          250, 500, 1000]
      assert not configs["implicit_N1000_no_alternate"].optim.alternate
      assert configs["implicit_N1000"].optim.alternate
      assert configs["no_memory"].data.synthetic.clip_latent
      assert configs["no_memory"].data.test_speakers >= 1  # Held-out speakers.
    else:
      assert [configs[r].model.memory for r in ("explicit", "implicit", "none")] == [
          "explicit", "implicit", "none"]
      assert configs["none"].data.synthetic.mouth_interior
    if size == "smoke":
      assert all(str(tmp_path) in c.data.root for c in configs.values())


def _result(stage, run, seed, rmse):
  return {"stage": stage, "run": run, "seed": seed, "num_steps": 10,
          "test_seen": {"vertex_rmse": rmse, "attention": {"slots_used": 3}}}


def test_tables_and_results_section(ablation, tmp_path):
  results = [_result("stage1", "no_memory", 0, 0.1), _result("stage1", "no_memory", 1, 0.3),
             _result("stage1", "implicit_N250", 0, 0.2)]
  text = ablation.tables(results, "python experiments/memface_ablation.py --seeds 0,1", "smoke")
  assert "| no_memory | 2 | 0.2000 ± 0.1414 |" in text
  assert "| implicit_N250 | 1 | 0.2000 |" in text and "| 3.0 |" in text
  path = tmp_path / "RESULTS.md"
  path.write_text("# Results\n\nkept\n")
  ablation.write_results(path, "first")
  ablation.write_results(path, "second")
  content = path.read_text()
  assert "kept" in content and "second" in content and "first" not in content
  assert content.count(ablation.START) == 1
