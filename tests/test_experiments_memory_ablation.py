"""The MCNet memory-ablation runner: one paper ablation per run, equal steps and data, its tables."""
from __future__ import annotations

import importlib.util
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ablation():
  spec = importlib.util.spec_from_file_location("memory_ablation", REPO / "experiments" / "memory_ablation.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("size", ["full", "smoke"])
def test_run_configs(ablation, size, tmp_path):
  configs = {run: ablation.run_config(size, run, 5, tmp_path) for run in ablation.RUNS}
  assert len({c.train.num_steps for c in configs.values()}) == 1  # Equal steps.
  assert len({c.data.root for c in configs.values()}) == 1  # Same data ...
  assert all(c.data.get("synthetic_seed", 0) == 0 for c in configs.values())  # ... whatever the seed.
  assert all(c.seed == 5 and c.data.seed == 5 for c in configs.values())
  assert all(c.data.pair_sampling == "disocclusion" for c in configs.values())
  assert configs["full"].model.use_memory and not configs["baseline"].model.use_memory
  assert configs["single_layer"].model.memory.layers == "first"
  assert configs["full"].model.memory.layers == "all"
  assert not configs["iscm_no_keypoints"].model.memory.iscm_keypoints
  assert configs["iscm_no_keypoints"].model.memory.iscm_features
  assert not configs["iscm_no_features"].model.memory.iscm_features
  if size == "full":
    assert configs["full"].train.num_steps >= 5000


def _result(run, seed, l1, masked):
  return {"run": run, "seed": seed, "num_steps": 10, "num_frames": 16,
          "metrics": {"l1": l1, "l1_disoccluded": masked, "ssim_disoccluded": 0.5}}


def test_tables_show_spread_and_the_difference_to_the_baseline(ablation, tmp_path):
  results = [_result("full", 0, 0.10, 0.20), _result("full", 1, 0.20, 0.30),
             _result("baseline", 0, 0.20, 0.30), _result("baseline", 1, 0.20, 0.30)]
  text = ablation.tables(results, "python experiments/memory_ablation.py", "smoke", None)
  assert "| full | 2 | 0.1500 ± 0.0707 |" in text
  # Per-seed differences to the baseline: (0.1 - 0.2, 0.2 - 0.2) -> mean -0.05, std 0.0707.
  assert "| full | -0.0500 ± 0.0707 | -0.0500 ± 0.0707 | +0.0000 ± 0.0000 |" in text
  path = tmp_path / "RESULTS.md"
  path.write_text("# Results\n\nkept\n")
  ablation.write_results(path, "first")
  ablation.write_results(path, "second")
  content = path.read_text()
  assert "kept" in content and "second" in content and "first" not in content
