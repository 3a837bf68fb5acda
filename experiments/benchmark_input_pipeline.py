"""Throughput of the training-pair pipeline: can it feed one GPU?

Creates a small dataset in a temp dir (synthetic faces from
data_pipelines.synthetic.video_set when available, else moving textured blobs),
stores it as PNG folders, as MP4 files and as a TFDS ArrayRecord build, and
measures training pairs per second (batch 8, augmentation on) for each
format, at 256² and 64², in-process (threads) and with Grain worker processes.

  python experiments/benchmark_input_pipeline.py [--workers 2] [--frames 48]

Prints one JSON line per measurement (with the 1-minute load average: other
jobs on the machine slow it down), then a verdict line against the MCNet
target: ~20 steps/s x batch 8 at 256² = 160 samples/s for one GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np
import psutil

# Runnable from a checkout without `pip install -e .`.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from data_pipelines.fomm import layout as fomm_layout  # pylint: disable=g-import-not-at-top,wrong-import-position
from data_pipelines.fomm import pipelines  # pylint: disable=g-import-not-at-top,wrong-import-position
from data_pipelines import video_io  # pylint: disable=g-import-not-at-top,wrong-import-position

TARGET_SAMPLES_PER_S = 20 * 8  # MCNet steps/s x batch on one GPU, 256².


def _blob_video(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
  """A smooth random texture with three moving Gaussian blobs (uint8)."""
  import cv2  # pylint: disable=g-import-not-at-top
  texture = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), size / 32)
  texture = (texture - texture.min()) / (np.ptp(texture) + 1e-6)
  yy, xx = np.mgrid[:size, :size].astype(np.float32)
  start, speed = rng.random((3, 2)) * size, (rng.random((3, 2)) - 0.5) * size / frames
  colours = rng.random((3, 3)).astype(np.float32)
  out = np.empty((frames, size, size, 3), np.uint8)
  for t in range(frames):
    frame = texture.copy()
    for (cy, cx), (vy, vx), colour in zip(start, speed, colours):
      mask = np.exp(-((yy - cy - vy * t) ** 2 + (xx - cx - vx * t) ** 2) / (size * 2.0))
      frame = frame * (1 - mask[..., None]) + colour * mask[..., None]
    out[t] = np.clip(frame * 255, 0, 255).astype(np.uint8)
  return out


def make_png_dataset(root: pathlib.Path, *, identities: int, clips: int,
                     frames: int, size: int, seed: int = 0) -> str:
  """FOMM png-folder dataset; returns which generator made it."""
  try:
    from data_pipelines.synthetic import video_set as generate  # pylint: disable=g-import-not-at-top
  except ImportError:
    generate = None
  if generate is not None and hasattr(generate, "generate_dataset"):
    generate.generate_dataset(
        root, num_identities=identities, clips_per_identity=clips,
        frames_per_clip=frames, size=size, seed=seed, test_fraction=0.0,
        video_format="png")
    return "synthetic_faces"
  rng = np.random.default_rng(seed)
  for i in range(identities):
    for c in range(clips):
      video_io.write_video(root / "train" / f"id{i:03d}#clip{c}", _blob_video(rng, frames, size))
  return "moving_blobs"


def make_mp4_dataset(png_root: pathlib.Path, mp4_root: pathlib.Path) -> None:
  index = fomm_layout.FommVideoIndex(png_root)
  for split in index.splits:
    for video in index.videos(split):
      video_io.write_video(mp4_root / split / f"{video.name}.mp4", index.read_video(video))


def _cpu_seconds() -> float:
  """CPU time of this process and its live children (Grain workers)."""
  me = psutil.Process()
  total = 0.0
  for proc in [me, *me.children(recursive=True)]:
    with contextlib.suppress(psutil.Error):
      times = proc.cpu_times()
      total += times.user + times.system
  return total


def measure(cfg: pipelines.DataConfig, store, batches: int, warmup: int
            ) -> tuple[float, float]:
  """(samples per second, CPU ms per sample) after `warmup` batches.

  Wall-clock rate depends on what else runs on the machine; CPU time per
  sample does not, so it gives the cores needed for a target rate.
  """
  it = iter(pipelines.train_dataset(cfg, store=store, process_index=0, process_count=1))
  try:
    for _ in range(warmup):
      next(it)
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    for _ in range(batches):
      next(it)
    samples = batches * cfg.batch_size
    return (samples / (time.perf_counter() - start),
            1000.0 * (_cpu_seconds() - cpu_start) / samples)
  finally:
    it.close()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--identities", type=int, default=8)
  parser.add_argument("--clips", type=int, default=2)
  parser.add_argument("--frames", type=int, default=48)
  parser.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 1))
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--batches", type=int, default=40)
  parser.add_argument("--sizes", default="256,64")
  parser.add_argument("--formats", default="folders,mp4,tfds")
  args = parser.parse_args()

  sizes = [int(s) for s in args.sizes.split(",")]
  formats = args.formats.split(",")
  results = []
  with tempfile.TemporaryDirectory(prefix="pipeline_bench_") as tmp:
    for size in sizes:  # Data stored at the trained size, as one would prepare it.
      data = pathlib.Path(tmp) / str(size)
      start = time.perf_counter()
      source = make_png_dataset(data / "png", identities=args.identities,
                                clips=args.clips, frames=args.frames, size=size)
      roots = {"folders": data / "png"}
      if "mp4" in formats:
        make_mp4_dataset(data / "png", data / "mp4")
        roots["mp4"] = data / "mp4"
      if "tfds" in formats:
        from data_pipelines.fomm import tfds_builders  # pylint: disable=g-import-not-at-top
        with contextlib.redirect_stdout(sys.stderr):
          tfds_builders.build("synthetic_talking_faces", data / "png", data / "tfds")
        roots["tfds"] = data / "tfds"
      print(json.dumps({"event": "data_ready", "source": source, "size": size,
                        "seconds": round(time.perf_counter() - start, 1),
                        "videos": args.identities * args.clips,
                        "frames_per_video": args.frames}), flush=True)
      for fmt in formats:
        base = pipelines.DataConfig(
            root=str(roots[fmt]), format="tfds" if fmt == "tfds" else "folders",
            image_size=size, batch_size=args.batch, num_repeats=50, augment=True)
        store = pipelines.make_store(base)
        for workers in (0, args.workers):
          cfg = dataclasses.replace(base, worker_count=workers,
                                    read_threads=2 if workers == 0 else 1)
          rate, cpu_ms = measure(cfg, store, batches=args.batches if size >= 128 else 3 * args.batches,
                         warmup=2 if workers == 0 else 2 * workers + 2)
          row = {"format": fmt, "image_size": size, "workers": workers,
                 "threads_per_process": cfg.read_threads, "batch": args.batch,
                 "samples_per_s": round(rate, 1), "cpu_ms_per_sample": round(cpu_ms, 2),
                 "load_avg_1min": round(os.getloadavg()[0], 2)}
          results.append(row)
          print(json.dumps(row), flush=True)

  cores = os.cpu_count() or 1
  largest = [r for r in results if r["image_size"] == max(sizes)]
  best = max(largest, key=lambda r: r["samples_per_s"])
  cheapest = min(largest, key=lambda r: r["cpu_ms_per_sample"])
  print(json.dumps({
      "event": "verdict", "target_samples_per_s": TARGET_SAMPLES_PER_S,
      "image_size": max(sizes), "best_measured": best, "cpu_cores_here": cores,
      "feeds_one_gpu_here": best["samples_per_s"] >= TARGET_SAMPLES_PER_S,
      # Busy cores the target needs, from CPU time per sample (load-independent).
      "cores_needed": {r["format"] + ("+workers" if r["workers"] else ""):
                       round(TARGET_SAMPLES_PER_S * r["cpu_ms_per_sample"] / 1000, 2)
                       for r in largest},
      "cheapest": cheapest["format"],
  }), flush=True)


if __name__ == "__main__":
  main()
