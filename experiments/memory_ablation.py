"""Does MCNet's memory help? Paper Tables 2 / 4 on the synthetic faces, with seeds and disocclusion masks.

  python experiments/memory_ablation.py --size full --seeds 0,1,2 --workdir workdirs/memory_ablation
  python experiments/memory_ablation.py --size full --seeds 0 --runs full,baseline   # one part
  python experiments/memory_ablation.py --size smoke --seeds 0 --workdir /tmp/memory_ablation_smoke

Runs (every one on the same data, steps and seeds; `configs/mcnet.py:demo`'s model and 64x64 faces):
  full               MCNet: ISCM + MCM at every decoder level
  baseline           no memory units (the paper's baseline)
  single_layer       ISCM + MCM at the deepest level only (Table 4, "MCNet (single layer)")
  iscm_no_keypoints  the implicit scale code from the projected feature only (Table 4)
  iscm_no_features   the implicit scale code from the source keypoints only ("ISCM w/o F_proj")
Training pairs stress disocclusion (data.pair_sampling='disocclusion': half the pairs are the best of
8 random pairs by yaw difference + occluder difference, data_pipelines/fomm/pairs.py). A seed sets
the initialisation and the pair sampling (config.seed, config.data.seed); the data are the same.

Evaluation: the FOMM reconstruction protocol on the held-out identities (frame 0 drives every frame of
its video) with L1 / PSNR / SSIM over the whole frame and inside the ground-truth disocclusion mask
(the driving pixels whose surface the source frame does not show: talkingmem/mcnet/evaluate.py).
Pictures: for the `full` run of the first seed, the meta-memory and the scale-aware memory of the
two held-out sources whose face scales differ most (paper Fig. 6 / 7): <workdir>/memory_figure.png.

Sizes: `full` (5000 steps, ~25 min a run on 2 CPU cores: 15 runs ~6.5 h, run it in parts with
--runs / --seeds), `smoke` (the tiny config, 4 steps: the machinery only). A run whose workdir
holds ablation.json is not redone, and an interrupted run resumes from its last checkpoint. The tables
(mean +- std over seeds of every finished run of the size) go to --results (default
experiments/RESULTS.md for `full`, <workdir>/RESULTS.md for smoke) between the markers below.
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

START, END = "<!-- memory_ablation:start -->", "<!-- memory_ablation:end -->"
RUNS = {
    "full": {},
    "baseline": {"model.use_memory": False},
    "single_layer": {"model.memory.layers": "first"},
    "iscm_no_keypoints": {"model.memory.iscm_keypoints": False},
    "iscm_no_features": {"model.memory.iscm_features": False},
}
SIZES = {
    # The data are pinned (the demo's faces at head_motion 1, as in the first parts of the sweep), so
    # that later parts of the sweep train on the same faces whatever the demo's settings become.
    "full": ("demo", {"train.num_steps": 5000, "train.checkpoint_every": 500,
                      "data.pair_sampling": "disocclusion", "data.root": "workdirs/data/synthetic_demo64",
                      "data.synthetic.head_motion": 1.0}),
    "smoke": ("tiny", {"data.root": "{work}/data/synthetic32_smoke", "data.pair_sampling": "disocclusion",
                       "train.num_steps": 4}),
}
METRICS = [("L1", "l1", 4), ("PSNR", "psnr", 2), ("SSIM", "ssim", 4),
           ("L1 disoccluded", "l1_disoccluded", 4), ("PSNR disoccluded", "psnr_disoccluded", 2),
           ("SSIM disoccluded", "ssim_disoccluded", 4), ("disoccluded fraction", "disoccluded_fraction", 4)]


def load_config(variant: str):
  spec = importlib.util.spec_from_file_location("mcnet_config", REPO / "configs" / "mcnet.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


def run_config(size: str, run: str, seed: int, work: pathlib.Path):
  """The config of one run: the size's base and overrides, then the run's."""
  base, size_overrides = SIZES[size]
  config = load_config(base)
  for key, value in {**size_overrides, **RUNS[run]}.items():
    *parents, leaf = key.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value.format(work=work) if isinstance(value, str) else value
  config.seed = seed
  config.data.seed = seed
  # No pictures, videos or demo outputs during a sweep (time); the evaluation below is the result.
  config.train.update(image_every=10 ** 9, video_every=0, eval_every=10 ** 9, final_outputs=False)
  return config


def evaluate_run(workdir: pathlib.Path, config) -> dict[str, Any]:
  from talkingmem.mcnet import animate, evaluate  # pylint: disable=g-import-not-at-top
  loaded = animate.load_model(workdir)
  summary, _ = evaluate.reconstruction(loaded, config.data)
  return {"step": loaded.step, "num_videos": summary["num_videos"], "num_frames": summary["num_frames"],
          "metrics": {k: v["value"] for k, v in summary["metrics"].items()},
          "masked_frames": summary["metrics"].get("l1_disoccluded", {}).get("count", 0)}


def run_one(size: str, run: str, seed: int, work: pathlib.Path) -> dict[str, Any]:
  from talkingmem import train  # pylint: disable=g-import-not-at-top
  workdir = work / run / f"seed{seed}"
  done = workdir / "ablation.json"
  if done.exists():
    return json.loads(done.read_text())
  config = run_config(size, run, seed, work)
  tic = time.time()
  train.train_and_evaluate(config, str(workdir))
  train_seconds = time.time() - tic
  result = evaluate_run(workdir, config)
  result.update(run=run, seed=seed, size=size, num_steps=int(config.train.num_steps),
                train_seconds=round(train_seconds, 1),
                eval_seconds=round(time.time() - tic - train_seconds, 1))
  results_file.write_atomic(done, json.dumps(result, indent=1) + "\n")
  return result


def finished_runs(work: pathlib.Path, size: str) -> list[dict[str, Any]]:
  order = {r: i for i, r in enumerate(RUNS)}
  results = [json.loads(p.read_text()) for p in work.glob("*/seed*/ablation.json")]
  results = [r for r in results if r.get("size") == size and r.get("run") in order]
  return sorted(results, key=lambda r: (order[r["run"]], r["seed"]))


# --------------------------------------------------------------------------------------------------
# Memory pictures.


def held_out_sources_by_scale(config) -> list[tuple[str, np.ndarray, float]]:
  """(video, frame 0, face scale) of the held-out videos with the smallest and largest face scale
  (the renderer's pose[5] of frame 0; without metadata, the first two videos)."""
  from data_pipelines.fomm import pipelines  # pylint: disable=g-import-not-at-top
  store = pipelines.make_store(config.data)
  found = []
  for video in store.videos("test"):
    meta = store.metadata(video) if hasattr(store, "metadata") else None
    scale = float(meta["pose"][0, 5]) if meta and "pose" in meta else float("nan")
    found.append((video, scale))
  if len(found) < 2:
    return []
  ranked = sorted(found, key=lambda vs: vs[1]) if not np.isnan(found[0][1]) else found
  picks = [ranked[0], ranked[-1]]
  return [(v.name, store.read_frames(v, [0])[0].astype(np.float32) / 255, s) for v, s in picks]


def write_memory_pictures(workdir: pathlib.Path, config, out: pathlib.Path) -> str | None:
  import cv2  # pylint: disable=g-import-not-at-top
  from talkingmem.mcnet import animate  # pylint: disable=g-import-not-at-top
  from talkingmem.mcnet.tools import visualize_memory  # pylint: disable=g-import-not-at-top
  loaded = animate.load_model(workdir)
  sources = held_out_sources_by_scale(config)
  meta = visualize_memory.meta_memory(loaded.variables)
  panels = [(f"meta-memory ({meta.shape[-1]} channels)", meta)]
  for name, image, scale in sources:
    panels.append((f"scale-aware memory of {name} (face scale {scale:.2f})",
                   visualize_memory.conditioned_memory(loaded, image)))
  figure = visualize_memory.memory_figure(panels, columns=16, cell=48)
  if sources:  # The two sources themselves, on the left of a strip under the grids.
    faces = np.concatenate([cv2.resize(image, (128, 128), interpolation=cv2.INTER_NEAREST)
                            for _, image, _ in sources], axis=1)
    strip = np.full((128, figure.shape[1], 3), 255, np.uint8)
    strip[:, :faces.shape[1]] = (np.clip(faces[..., ::-1], 0, 1) * 255).round().astype(np.uint8)
    figure = np.concatenate([figure, strip])
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_name(f".{out.name}.tmp.png")
  if not cv2.imwrite(str(tmp), figure):
    raise OSError(f"could not write {out}")
  tmp.replace(out)
  return str(out)


# --------------------------------------------------------------------------------------------------
# Tables.


def _cell(results: list[dict[str, Any]], key: str, digits: int) -> str:
  values = np.array([r["metrics"].get(key, np.nan) for r in results], np.float64)
  values = values[~np.isnan(values)]
  if not len(values):
    return "-"
  if len(values) == 1:
    return f"{values[0]:.{digits}f}"
  return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def tables(results: list[dict[str, Any]], command: str, size: str, figure: str | None) -> str:
  grouped: dict[str, list[dict]] = {}
  for r in results:
    grouped.setdefault(r["run"], []).append(r)
  steps = sorted({r["num_steps"] for r in results})
  frames = sorted({r["num_frames"] for r in results})
  lines = [f"Command: `{command}` ({time.strftime('%Y-%m-%d', time.gmtime())}, size {size}, steps per "
           f"run {steps}, held-out frames {frames}; mean ± std over seeds).", "",
           "| run | seeds | " + " | ".join(name for name, _, _ in METRICS) + " |",
           "|---" * (len(METRICS) + 2) + "|"]
  for run, rows in grouped.items():
    lines.append(f"| {run} | {len(rows)} | " + " | ".join(_cell(rows, k, d) for _, k, d in METRICS) + " |")
  if "baseline" in grouped:
    lines += ["", "Difference to `baseline` per seed (negative L1 / positive PSNR, SSIM: better than "
              "no memory), mean ± std over the seeds both have:", "",
              "| run | L1 | L1 disoccluded | SSIM disoccluded |", "|---|---|---|---|"]
    base = {r["seed"]: r["metrics"] for r in grouped["baseline"]}
    for run, rows in grouped.items():
      if run == "baseline":
        continue
      cells = []
      for key, digits in (("l1", 4), ("l1_disoccluded", 4), ("ssim_disoccluded", 4)):
        diffs = np.array([r["metrics"][key] - base[r["seed"]][key] for r in rows
                          if r["seed"] in base and key in r["metrics"] and key in base[r["seed"]]])
        cells.append("-" if not len(diffs) else (f"{diffs.mean():+.{digits}f}" if len(diffs) == 1 else
                                                 f"{diffs.mean():+.{digits}f} ± {diffs.std(ddof=1):.{digits}f}"))
      lines.append(f"| {run} | " + " | ".join(cells) + " |")
  if figure:
    lines += ["", f"Memory pictures (the `full` run, first seed): `{figure}`."]
  return "\n".join(lines) + "\n"


def write_results(path: pathlib.Path, body: str) -> None:
  """Replaces this runner's marked section of `path`, keeping the rest."""
  results_file.write_section(path, START, END, "MCNet memory ablation (experiments/memory_ablation.py)", body)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", choices=sorted(SIZES), default="full")
  parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
  parser.add_argument("--runs", default=None, help=f"comma-separated runs (default: all of {list(RUNS)})")
  parser.add_argument("--workdir", default="workdirs/memory_ablation")
  parser.add_argument("--results", default=None, help="markdown file for the tables")
  args = parser.parse_args(argv)
  try:
    seeds = [int(s) for s in args.seeds.split(",") if s]
  except ValueError:
    print(f"memory_ablation: error: --seeds {args.seeds!r}: expected integers like 0,1,2", file=sys.stderr)
    return 2
  runs = args.runs.split(",") if args.runs else list(RUNS)
  if set(runs) - set(RUNS):
    print(f"memory_ablation: error: unknown --runs {sorted(set(runs) - set(RUNS))}; runs are {list(RUNS)}",
          file=sys.stderr)
    return 2
  work = pathlib.Path(args.workdir)
  work.mkdir(parents=True, exist_ok=True)
  for seed in seeds:  # Seed-major: an interrupted sweep has every run at the same seeds.
    for run in runs:
      tic = time.time()
      result = run_one(args.size, run, seed, work)
      print(f"memory_ablation: {run} seed {seed}: L1 {result['metrics']['l1']:.4f}, disoccluded "
            f"{result['metrics'].get('l1_disoccluded', float('nan')):.4f} ({time.time() - tic:.0f} s)",
            file=sys.stderr, flush=True)
  figure = None
  full_runs = sorted(work.glob("full/seed*/ablation.json"))
  if full_runs:
    first = full_runs[0].parent
    seed = int(first.name.removeprefix("seed"))
    figure = write_memory_pictures(first, run_config(args.size, "full", seed, work),
                                   work / "memory_figure.png")
  results = finished_runs(work, args.size)
  results_file.write_atomic(work / "ablation.json", json.dumps(results, indent=1) + "\n")
  results_path = pathlib.Path(args.results) if args.results else (
      REPO / "experiments" / "RESULTS.md" if args.size != "smoke" else work / "RESULTS.md")
  command = "python experiments/memory_ablation.py " + " ".join(argv if argv is not None else sys.argv[1:])
  write_results(results_path, tables(results, command, args.size, figure))
  print(f"memory_ablation: tables in {results_path}" + (f", memory pictures in {figure}" if figure else ""),
        file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
