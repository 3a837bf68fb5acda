"""MemFace's ablations and toy tests (paper Tables 3 / 4, supplement C.3), with seeds, on one-to-many data.

  python experiments/memface_ablation.py --size full --seeds 0,1,2 --workdir workdirs/ablation
  python experiments/memface_ablation.py --size smoke --seeds 0 --workdir /tmp/ablation_smoke

Data: stage 1 trains on `configs/memface_a2e.py:latent` (16 synthetic speakers x 40 sentences,
each clip with a speaking mode that moves the mouth much and the audio little; 2 speakers held out
besides the held-out sentences), stage 2 on `configs/memface_renderer.py:interior` (4 speakers x 16
sentences rendered at 64 px with per-speaker teeth / tongue / inner lip; held-out sentences: the
renderer is person-specific). Every run of a stage has the same steps and data; a seed sets the
model initialisation and the window sampling (config.seed, config.data.seed).

Stage 1 runs: no memory / implicit N = 250, 500, 1000 / implicit N = 1000 without the alternating
updates / explicit memory. Per run: mouth-vertex RMSE (held-out sentences of training speakers and
held-out speakers), lip-opening correlation (inner-lip landmark vertices 62 / 66 of the predicted vs
ground-truth face), the toy test (a) (implicit keys and values replaced by N(0, 1): eval_a2e.json's
`test_random_memory`) and attention statistics (`talkingmem/metrics/attention.py`).
Stage 2 runs: explicit / implicit / no memory. Per run: whole-frame, mouth-box and lower-face L1,
PSNR, SSIM (eval_summary.json), LMD with --lmd (experiments/memface_renderer_lmd.py, dlib), the
toy test (b) (each speaker given the next speaker's explicit memory) and retrieval statistics
(attention over all speakers' slots; `own_speaker_mass`: weight on the speaker's own memory).

Sizes: `full` (the configs' steps), `medium` (`full` with 300 renderer steps: the 3-seed sweep in
~2 h of a 2-core CPU), `smoke` (4-step tiny configs: the machinery only). A run whose workdir holds
ablation.json is not redone (resumable). Results: per run <workdir>/stage*/<run>/seed<k>/ablation.json,
all finished runs of the size in <workdir>/ablation.json, and the tables (mean +- std over seeds) in
--results (default experiments/RESULTS.md; <workdir>/RESULTS.md for smoke), between the markers below (the rest of the file is kept).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys
import time
from typing import Any

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))
import results_file  # noqa: E402  (beside this script)

START, END = "<!-- memface_ablation:start -->", "<!-- memface_ablation:end -->"
STAGE1_RUNS = {  # name -> (ablation of the config variant, overrides)
    "no_memory": ("no_memory", {}),
    "implicit_N250": (None, {"model.memory_slots": 250}),
    "implicit_N500": (None, {"model.memory_slots": 500}),
    "implicit_N1000": (None, {"model.memory_slots": 1000}),
    "implicit_N1000_no_alternate": (None, {"model.memory_slots": 1000, "optim.alternate": False}),
    "explicit": ("explicit_memory", {"model.memory_slots": 1000}),
}
STAGE2_RUNS = {"explicit": (None, {}), "implicit": ("implicit_memory", {}),
               "none": ("no_memory", {})}
SIZES = {
    "full": {"a2e": ("latent", {"data.test_speakers": 2}), "renderer": ("interior", {})},
    # `full` with a shorter stage 2 (300 renderer steps, not 800): the whole 3-seed sweep in ~2 h of a
    # 2-core CPU (stage 1 runs at ~30 steps/s there, so it keeps all 3000 steps).
    "medium": {"a2e": ("latent", {"data.test_speakers": 2}),
               "renderer": ("interior", {"train.num_steps": 300, "train.eval_every": 300,
                                         "train.checkpoint_every": 300})},
    "smoke": {
        "a2e": ("tiny", {"data.root": "{work}/data/a2e_latent_smoke",
                         "data.synthetic.clip_latent": True, "data.synthetic.num_speakers": 3,
                         "data.synthetic.clips_per_speaker": 4, "data.test_speakers": 1}),
        "renderer": ("tiny", {"data.root": "{work}/data/renderer_interior_smoke",
                              "data.synthetic.mouth_interior": True})},
}


def load_config(name: str, variant: str):
  spec = importlib.util.spec_from_file_location(f"{name}_config", REPO / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


def run_config(stage: str, size: str, run: str, seed: int, work: pathlib.Path):
  """The config of one run: the size's base and overrides, the run's ablation and overrides."""
  base, size_overrides = SIZES[size]["a2e" if stage == "stage1" else "renderer"]
  ablation, overrides = (STAGE1_RUNS if stage == "stage1" else STAGE2_RUNS)[run]
  config = load_config("memface_a2e" if stage == "stage1" else "memface_renderer",
                       base + (f",{ablation}" if ablation else ""))
  for key, value in {**size_overrides, **overrides}.items():
    *parents, leaf = key.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value.format(work=work) if isinstance(value, str) else value
  config.seed = seed
  config.data.seed = seed
  if "video_every" in config.train:  # No per-step videos in a sweep (time); renderer.mp4 stays.
    config.train.video_every = 10 ** 9
  config.train.image_every = 10 ** 9
  return config


# --------------------------------------------------------------------------------------------------
# Per-run analysis.


def _landmark_vertices(face, id_coeffs: np.ndarray, exp_full: np.ndarray) -> np.ndarray:
  """(F, 68, 3) landmark vertices only (the whole mesh per frame would not fit for long splits)."""
  lm = face.landmark_vertex_ids
  return (face.mean[lm][None] + np.einsum("fk,kvc->fvc", id_coeffs, face.id_basis[:, lm])
          + np.einsum("fk,kvc->fvc", exp_full, face.exp_basis[:, lm]))


def stage1_analysis(workdir: pathlib.Path, config) -> dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from talkingmem import checkpointing, task as task_lib  # pylint: disable=g-import-not-at-top
  from talkingmem.metrics import attention, lip_sync  # pylint: disable=g-import-not-at-top

  variables, _, step = checkpointing.load_variables(workdir)
  task = task_lib.get_task(config)
  store, face = task.store, task.store.face_model
  apply = jax.jit(lambda v, a, m: task.model.apply(v, a, m))
  evaluation = json.loads((workdir / "eval_a2e.json").read_text())
  out: dict[str, Any] = {"step": step, "memory": task.model.memory}
  for split in ("test_seen", "test_unseen"):
    if not store.splits.get(split):
      continue
    pred, gt, ids, weights = [], [], [], []
    for batch in task.eval_batches(0, 1, split):
      res = apply(variables, jnp.asarray(batch["audio"]), jnp.asarray(batch["mask"]))
      keep = np.asarray(batch["mask"], bool) & np.asarray(batch["valid"], bool)[:, None]
      pred.append(np.asarray(res["coeffs"])[keep])
      gt.append(np.asarray(batch["exp"])[keep])
      ids.append(np.broadcast_to(np.asarray(batch["id"])[:, None], keep.shape + batch["id"].shape[-1:])[keep])
      if "memory_weights" in res:
        weights.append(np.asarray(res["memory_weights"])[keep])
    pred, gt, ids = map(np.concatenate, (pred, gt, ids))
    full_pred, full_gt = np.zeros((2, len(pred), face.n_exp), np.float32)
    full_pred[:, store.exp_index], full_gt[:, store.exp_index] = pred, gt
    shape = lip_sync.mouth_shape_error(_landmark_vertices(face, ids, full_pred),
                                       _landmark_vertices(face, ids, full_gt))
    dv = np.einsum("fk,kvc->fvc", pred - gt, face.exp_basis[store.exp_index][:, face.mouth_vertex_ids])
    row = {"frames": len(pred), "vertex_rmse": float(np.sqrt(np.mean(np.sum(dv ** 2, -1)))),
           "opening_correlation": shape["opening_correlation"],
           "opening_mae": shape["opening_mae"]}
    if weights:
      row["attention"] = attention.attention_statistics(np.concatenate(weights))
    out[split] = row
  if "test_random_memory" in evaluation:
    out["random_memory_vertex_rmse"] = evaluation["test_random_memory"]["vertex_rmse"]
    out["trained_memory_vertex_rmse"] = evaluation["test"]["vertex_rmse"]
  out["baseline_train_mean_vertex_rmse"] = evaluation["test_baseline_train_mean"]["vertex_rmse"]
  return out


def stage2_analysis(workdir: pathlib.Path, config, lmd: bool) -> dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from talkingmem import checkpointing, task as task_lib  # pylint: disable=g-import-not-at-top
  from talkingmem.metrics import attention  # pylint: disable=g-import-not-at-top

  variables, _, step = checkpointing.load_variables(workdir)
  task = task_lib.get_task(config)
  split = "test_seen" if task.store.splits.get("test_seen") else "test"
  evaluation = json.loads((workdir / "eval_summary.json").read_text())
  out: dict[str, Any] = {"step": step, "memory": task.model.config.memory, "split": split,
                         "test": evaluation[split]}
  state = {k: v for k, v in variables.items() if k != "params"}
  if task.model.config.memory != "none":
    render = jax.jit(lambda p, s, b: task.render(p, s, b, return_weights=True)[1])
    weights, own = [], []
    for batch in task.eval_batches(0, 1, split):
      valid = np.asarray(batch["valid"], bool)
      numeric = {k: jnp.asarray(v) for k, v in batch.items() if np.asarray(v).dtype.kind in "biuf"}
      w = np.asarray(render(variables["params"]["renderer"], state, numeric))[valid]
      if w.ndim == 3:  # (B, S, N): explicit memories of every speaker.
        own.append(w[np.arange(len(w)), np.asarray(batch["speaker"])[valid]].sum(-1))
      weights.append(w.reshape(len(w), -1))
    out["attention"] = attention.attention_statistics(np.concatenate(weights))
    if own:
      out["attention"]["own_speaker_mass"] = float(np.concatenate(own).mean())
  if task.model.config.memory == "explicit":
    speakers = list(task.memories())
    swapped = task.with_memories(variables, speakers[1:] + speakers[:1])
    out["other_speaker_memory"] = task.evaluate_split(swapped, split)
  if lmd:
    from experiments import memface_renderer_lmd  # pylint: disable=g-import-not-at-top
    frames = memface_renderer_lmd.render_split(str(workdir), None)
    rows = memface_renderer_lmd.lmd_rows(frames, memface_renderer_lmd.Landmarker(4))
    out["lmd"] = {k: rows["pred"][k] for k in ("lmd", "lmd_gt_box", "found")}
  return out


def run_one(stage: str, size: str, run: str, seed: int, work: pathlib.Path, lmd: bool
            ) -> dict[str, Any]:
  from talkingmem import train  # pylint: disable=g-import-not-at-top
  workdir = work / stage / run / f"seed{seed}"
  done = workdir / "ablation.json"
  if done.exists():
    return json.loads(done.read_text())
  config = run_config(stage, size, run, seed, work)
  tic = time.time()
  train.train_and_evaluate(config, str(workdir))
  train_seconds = time.time() - tic
  result = (stage1_analysis(workdir, config) if stage == "stage1"
            else stage2_analysis(workdir, config, lmd))
  result.update(stage=stage, run=run, seed=seed, size=size, num_steps=int(config.train.num_steps),
                train_seconds=round(train_seconds, 1),
                analysis_seconds=round(time.time() - tic - train_seconds, 1))
  results_file.write_atomic(done, json.dumps(result, indent=1) + "\n")
  return result


def finished_runs(work: pathlib.Path, size: str) -> list[dict[str, Any]]:
  """Every run of `size` in `work` that has its ablation.json, in the tables' order."""
  order = {**{("stage1", r): i for i, r in enumerate(STAGE1_RUNS)},
           **{("stage2", r): 100 + i for i, r in enumerate(STAGE2_RUNS)}}
  results = []
  for path in work.glob("stage*/*/seed*/ablation.json"):
    result = json.loads(path.read_text())
    if result.get("size", size) == size and (result["stage"], result["run"]) in order:
      results.append(result)
  return sorted(results, key=lambda r: (order[(r["stage"], r["run"])], r["seed"]))


# --------------------------------------------------------------------------------------------------
# Tables.


def _get(result: dict[str, Any], path: str) -> float:
  node: Any = result
  for part in path.split("."):
    if not isinstance(node, dict) or part not in node:
      return float("nan")
    node = node[part]
  return float(node)


def _cell(results: list[dict[str, Any]], path: str, digits: int = 4) -> str:
  values = np.array([_get(r, path) for r in results])
  values = values[~np.isnan(values)]
  if not len(values):
    return "-"
  if len(values) == 1:
    return f"{values[0]:.{digits}f}"
  return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _table(title: str, columns: list[tuple[str, str]], grouped: dict[str, list[dict]]) -> str:
  lines = [f"**{title}**", "", "| run | seeds | " + " | ".join(c for c, _ in columns) + " |",
           "|---" * (len(columns) + 2) + "|"]
  for run, results in grouped.items():  # Slot counts with one decimal, the rest with four.
    lines.append(f"| {run} | {len(results)} | " + " | ".join(
        _cell(results, path, 1 if "slots" in path else 4) for _, path in columns) + " |")
  return "\n".join(lines) + "\n"


STAGE1_COLUMNS = [
    ("vertex RMSE (held-out sentences)", "test_seen.vertex_rmse"),
    ("vertex RMSE (held-out speakers)", "test_unseen.vertex_rmse"),
    ("lip-opening corr. (sentences)", "test_seen.opening_correlation"),
    ("lip-opening corr. (speakers)", "test_unseen.opening_correlation"),
    ("train-mean baseline RMSE", "baseline_train_mean_vertex_rmse")]
STAGE1_TOY = [("RMSE trained memory (test)", "trained_memory_vertex_rmse"),
              ("RMSE random memory (test)", "random_memory_vertex_rmse"),
              ("entropy / log N", "test_seen.attention.entropy_ratio"),
              ("top-1 weight", "test_seen.attention.top1_weight"),
              ("slots used", "test_seen.attention.slots_used"),
              ("effective slots", "test_seen.attention.effective_slots")]
STAGE2_COLUMNS = [("L1", "test.l1"), ("mouth-box L1", "test.l1_mouth"),
                  ("lower-face L1", "test.l1_lower_face"), ("PSNR", "test.psnr"),
                  ("SSIM", "test.ssim"), ("LMD", "lmd.lmd"), ("LMD (GT box)", "lmd.lmd_gt_box")]
STAGE2_TOY = [("L1 own memory", "test.l1"), ("L1 other speaker's memory", "other_speaker_memory.l1"),
              ("mouth L1 own", "test.l1_mouth"),
              ("mouth L1 other's", "other_speaker_memory.l1_mouth"),
              ("entropy / log N", "attention.entropy_ratio"), ("top-1 weight", "attention.top1_weight"),
              ("slots used", "attention.slots_used"),
              ("own-speaker mass", "attention.own_speaker_mass")]


def tables(results: list[dict[str, Any]], command: str, size: str) -> str:
  def grouped(stage):
    out: dict[str, list[dict]] = {}
    for r in results:
      if r["stage"] == stage:
        out.setdefault(r["run"], []).append(r)
    return out

  s1, s2 = grouped("stage1"), grouped("stage2")
  steps = sorted({r["num_steps"] for r in results})
  parts = [f"Command: `{command}` ({time.strftime('%Y-%m-%d', time.gmtime())}, size {size}, "
           f"steps per run {steps}; mean ± std over seeds).", ""]
  if s1:
    parts += [_table("Stage 1 (Table 3 and memory size): mouth-vertex RMSE (lower is better), "
                     "lip-opening correlation", STAGE1_COLUMNS, s1), "",
              _table("Stage 1 toy test (a) and memory attention", STAGE1_TOY,
                     {k: v for k, v in s1.items() if k != "no_memory"}), ""]
  if s2:
    parts += [_table("Stage 2 (Table 4): held-out sentences, 64 px", STAGE2_COLUMNS, s2), "",
              _table("Stage 2 toy test (b) and retrieval statistics", STAGE2_TOY,
                     {k: v for k, v in s2.items() if k != "none"}), ""]
  return "\n".join(parts)


def write_results(path: pathlib.Path, body: str) -> None:
  """Replaces this runner's marked section of `path`, keeping the rest."""
  results_file.write_section(path, START, END, "MemFace ablations and toy tests (experiments/memface_ablation.py)", body)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", choices=sorted(SIZES), default="full")
  parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
  parser.add_argument("--stages", default="1,2", help="'1', '2' or '1,2'")
  parser.add_argument("--runs", default=None, help="comma-separated run names (default: all)")
  parser.add_argument("--workdir", default="workdirs/ablation")
  parser.add_argument("--results", default=None, help="markdown file for the tables")
  parser.add_argument("--lmd", action="store_true", help="stage 2: also LMD (dlib, slow)")
  args = parser.parse_args(argv)
  try:
    seeds = [int(s) for s in args.seeds.split(",") if s]
  except ValueError:
    print(f"memface_ablation: error: --seeds {args.seeds!r}: expected integers like 0,1,2",
          file=sys.stderr)
    return 2
  stages = [f"stage{s}" for s in args.stages.split(",") if s]
  known = set(STAGE1_RUNS) | set(STAGE2_RUNS)
  wanted = set(args.runs.split(",")) if args.runs else known
  if wanted - known or set(stages) - {"stage1", "stage2"}:
    print(f"memface_ablation: error: unknown --runs {sorted(wanted - known)} or --stages "
          f"{args.stages!r}; runs are {sorted(known)}, stages 1 and 2", file=sys.stderr)
    return 2
  work = pathlib.Path(args.workdir)
  work.mkdir(parents=True, exist_ok=True)
  results = []
  for stage in stages:
    for run in (STAGE1_RUNS if stage == "stage1" else STAGE2_RUNS):
      if run not in wanted:
        continue
      for seed in seeds:
        tic = time.time()
        results.append(run_one(stage, args.size, run, seed, work, args.lmd))
        print(f"memface_ablation: {stage} {run} seed {seed}: {time.time() - tic:.0f} s",
              file=sys.stderr, flush=True)
  # The tables show every finished run of this size in the workdir (seeds may come from several
  # invocations, e.g. one seed at a time so that an interrupted sweep is balanced over runs).
  results = finished_runs(work, args.size)
  results_file.write_atomic(work / "ablation.json", json.dumps(results, indent=1) + "\n")
  results_path = pathlib.Path(args.results) if args.results else (
      REPO / "experiments" / "RESULTS.md" if args.size != "smoke" else work / "RESULTS.md")
  command = "python experiments/memface_ablation.py " + " ".join(argv if argv is not None
                                                                  else sys.argv[1:])
  write_results(results_path, tables(results, command, args.size))
  print(f"memface_ablation: tables in {results_path}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
