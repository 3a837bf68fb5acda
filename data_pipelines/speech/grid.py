"""GRID corpus (and plain folders of speaker videos) -> the MemFace speech layout, in batch.

  python -m data_pipelines.speech.grid --source GRID_ROOT --out data/grid [--workers N] \
      [--size 128] [--tfds data/grid_tfds] [--speakers s1,s2] [--limit 10]
  python -m data_pipelines.speech.grid --source HDTF_VIDEOS --out data/hdtf --mode folder

GRID as distributed (Cooke et al. 2006): per-speaker folders `s1 ... s34` of 3 s `.mpg` videos
(at any depth below sN/, e.g. sN/video/mpg_6000/), word timings in `alignments/sN/<clip>.align`
(or sN/align/, sN/) and, in the separate audio release, `audio_25k/sN/<clip>.wav` (or audio_50k/,
audio/, sN/). A video without an audio stream takes its .wav; one with neither is counted as bad.
`--mode folder` (HDTF style) takes every video in the source folder as one speaker.

Every video runs through `prepare_speaker` (25 fps, face crop, 16 kHz audio, landmarks, 3DMM fit,
mouth masks, audio features), written atomically to

  out/<speaker>/<clip>/   (GRID: one clip per video; the folder is prepare_speaker's layout, plus
                          meta.json with the text and word timings from the .align file)
  out/<name>/             (folder mode: each video is a one-clip speaker, split by time)
  out/face_model.npz      the 3DMM of the coefficients (the built-in one unless --face_model)
  out/grid_summary.json   counts: done, skipped (already finished), bad (with the reason per file)

so the output is the dataset root of `configs/memface_a2e.py:grid` (speech layout: GRID speakers
hold out whole clips). Resumable: finished clip folders are skipped, so an interrupted run continues
where it stopped; bad files are skipped, counted and listed, never fatal. Parallel: a pool of
`--workers` spawned processes (each fits with its own JAX). `--tfds DIR` then packs the root into
ArrayRecord shards (`data_pipelines/speech/tfds.py`; train with --config.data.format=tfds).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import multiprocessing
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time
from typing import Any, Iterable

from data_pipelines import video_io
from data_pipelines.speech import layout as speech_layout
from data_pipelines.speech import prepare_speaker

ALIGN_TIME_UNITS = 25000  # GRID .align times are in 1/25000 s (75 frames <-> 75000).
SILENCE_WORDS = ("sil", "sp")
AUDIO_FOLDERS = ("audio_25k", "audio_50k", "audio")
ALIGN_FOLDERS = ("alignments", "align")
SUMMARY = "grid_summary.json"
MODES = ("grid", "folder")
_SPEAKER_DIR = re.compile(r"^s\d+$")


@dataclasses.dataclass(frozen=True)
class VideoJob:
  """One video to prepare: where it is, where it goes and its side files."""
  speaker: str
  clip: str
  video: pathlib.Path
  out: pathlib.Path
  wav: pathlib.Path | None = None
  align: pathlib.Path | None = None


def read_align_text(text: str, name: str = "align") -> list[dict[str, Any]]:
  """GRID .align text -> [{'word', 'start', 'end'} (seconds)], silences included."""
  words = []
  for number, line in enumerate(text.splitlines(), 1):
    parts = line.split()
    if not parts:
      continue
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
      raise ValueError(f"{name}:{number}: expected 'START END WORD', got {line!r}")
    words.append(dict(word=parts[2], start=int(parts[0]) / ALIGN_TIME_UNITS,
                      end=int(parts[1]) / ALIGN_TIME_UNITS))
  return words


def read_align(path: str | os.PathLike) -> list[dict[str, Any]]:
  return read_align_text(pathlib.Path(path).read_text(), str(path))


def spoken_text(words: Iterable[dict[str, Any]]) -> str:
  return " ".join(w["word"] for w in words if w["word"] not in SILENCE_WORDS)


def _first_file(candidates: Iterable[pathlib.Path]) -> pathlib.Path | None:
  return next((c for c in candidates if c.is_file()), None)


def grid_jobs(source: pathlib.Path, out: pathlib.Path, speakers: set[str] | None = None
              ) -> list[VideoJob]:
  """Every GRID video under `source` (speaker folders sN), with its .wav and .align if any."""
  jobs = []
  speaker_dirs = sorted((p for p in source.iterdir() if p.is_dir() and _SPEAKER_DIR.match(p.name)),
                        key=lambda p: int(p.name[1:]))
  for speaker_dir in speaker_dirs:
    speaker = speaker_dir.name
    if speakers is not None and speaker not in speakers:
      continue
    for video in sorted(speaker_dir.rglob("*")):
      if video.suffix.lower() not in video_io.VIDEO_EXTENSIONS or not video.is_file():
        continue
      clip = video.stem
      wav = _first_file([source / f / speaker / f"{clip}.wav" for f in AUDIO_FOLDERS]
                        + [video.with_suffix(".wav"), speaker_dir / f"{clip}.wav"])
      align = _first_file([source / f / speaker / f"{clip}.align" for f in ALIGN_FOLDERS]
                          + [speaker_dir / f / f"{clip}.align" for f in ALIGN_FOLDERS]
                          + [video.with_suffix(".align"), speaker_dir / f"{clip}.align"])
      jobs.append(VideoJob(speaker, clip, video, out / speaker / clip, wav, align))
  return jobs


def folder_jobs(source: pathlib.Path, out: pathlib.Path) -> list[VideoJob]:
  """Every video directly in `source`, each its own one-clip speaker (HDTF style)."""
  videos = sorted(p for p in source.iterdir()
                  if p.is_file() and p.suffix.lower() in video_io.VIDEO_EXTENSIONS)
  return [VideoJob(v.stem, v.stem, v, out / v.stem, v.with_suffix(".wav")
                   if v.with_suffix(".wav").is_file() else None) for v in videos]


def is_done(job: VideoJob) -> bool:
  """prepare_speaker writes summary.json last and renames the folder into place: complete."""
  return (job.out / "summary.json").is_file()


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
  size: int = 128
  min_seconds: float = 1.0
  face_model: str | None = None
  fit_steps: int | None = None
  rigid_steps: int | None = None
  focal_steps: int | None = None
  preview: bool = False

  def argv(self, video: pathlib.Path, out: pathlib.Path) -> list[str]:
    args = ["--video", str(video), "--out", str(out), "--size", str(self.size),
            "--min_seconds", str(self.min_seconds), "--overwrite"]
    for name in ("face_model", "fit_steps", "rigid_steps", "focal_steps"):
      if getattr(self, name) is not None:
        args += [f"--{name}", str(getattr(self, name))]
    return args + ([] if self.preview else ["--no_preview"])


def _video_with_audio(job: VideoJob, scratch: pathlib.Path) -> pathlib.Path:
  """The video itself if it carries audio (or has no .wav to add), else it muxed with its .wav."""
  if job.wav is None:
    return job.video
  try:
    if video_io.video_info(job.video)["has_audio"]:
      return job.video
  except video_io.VideoReadError:
    return job.video  # prepare_speaker reports why it cannot be read.
  muxed = scratch / f"{job.clip}.mkv"
  video_io.mux_audio(job.video, job.wav, muxed)
  return muxed


def prepare_one(job: VideoJob, options: PrepareOptions) -> dict[str, Any]:
  """Prepares one video; {'clip', 'status': 'done' | 'bad', 'reason'?, 'frames'?, 'seconds'}."""
  tic = time.perf_counter()
  key = f"{job.speaker}/{job.clip}" if job.out.parent.name == job.speaker else job.clip
  try:
    words = read_align(job.align) if job.align is not None else None
    with tempfile.TemporaryDirectory(prefix=".grid.", dir=job.out.parent) as scratch:
      video = _video_with_audio(job, pathlib.Path(scratch))
      # prepare_speaker's per-step progress bars would interleave across workers; one line per
      # video is logged instead.
      with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        summary = prepare_speaker.prepare(prepare_speaker.parse_args(options.argv(video,
                                                                                  job.out)))
  except (prepare_speaker.PrepareError, video_io.VideoReadError, ValueError, OSError) as e:
    shutil.rmtree(job.out, ignore_errors=True)  # Never leave a half folder a resume would trust.
    return dict(clip=key, status="bad", reason=str(e).splitlines()[0],
                seconds=round(time.perf_counter() - tic, 2))
  meta = dict(speaker=job.speaker, clip=job.clip, source=str(job.video),
              audio_source=str(job.wav) if video != job.video else "video")
  if words is not None:
    meta.update(text=spoken_text(words), words=words)
  _write_text(job.out / "meta.json", json.dumps(meta) + "\n")
  return dict(clip=key, status="done", frames=summary["frames"]["kept"],
              seconds=round(time.perf_counter() - tic, 2))


def _write_text(path: pathlib.Path, text: str) -> None:
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  tmp.write_text(text)
  os.replace(tmp, path)


def _worker_init() -> None:
  import cv2
  cv2.setNumThreads(1)  # Parallelism comes from the processes.


def run(source: str | os.PathLike, out: str | os.PathLike, *, mode: str = "grid",
        workers: int = 1, options: PrepareOptions = PrepareOptions(),
        speakers: Iterable[str] | None = None, limit: int | None = None,
        tfds_out: str | os.PathLike | None = None, log=print) -> dict[str, Any]:
  """Prepares every unfinished video of `source` into `out`; returns (and writes) the summary.

  Args:
    workers: processes; 0 runs in this process (tests, debugging).
    speakers: GRID speaker folders to take (default all).
    limit: at most this many videos (after the finished ones), e.g. for a first look.
  """
  source, out = pathlib.Path(source), pathlib.Path(out)
  if mode not in MODES:
    raise ValueError(f"--mode {mode!r}: must be one of {', '.join(MODES)}.")
  if not source.is_dir():
    raise ValueError(f"--source {source}: not a folder; pass the GRID root (holding s1 ... s34) "
                     "or, with --mode folder, a folder of videos.")
  out.mkdir(parents=True, exist_ok=True)
  jobs = (grid_jobs(source, out, None if speakers is None else set(speakers)) if mode == "grid"
          else folder_jobs(source, out))
  if not jobs:
    raise ValueError(f"--source {source}: no videos found ("
                     + ("expected speaker folders s1 ... s34 of .mpg files" if mode == "grid"
                        else f"expected {', '.join(video_io.VIDEO_EXTENSIONS)} files") + ").")
  todo = [j for j in jobs if not is_done(j)]
  skipped = len(jobs) - len(todo)
  if limit is not None:
    todo = todo[:limit]
  for job in todo:
    job.out.parent.mkdir(parents=True, exist_ok=True)
  log(f"grid: {len(jobs)} videos, {skipped} already prepared, {len(todo)} to prepare")
  tic = time.perf_counter()
  results = []
  if workers <= 0:
    results = [_logged(prepare_one(j, options), log) for j in todo]
  else:
    ctx = multiprocessing.get_context("spawn")  # JAX is not fork-safe.
    with concurrent.futures.ProcessPoolExecutor(workers, ctx, _worker_init) as pool:
      futures = [pool.submit(prepare_one, j, options) for j in todo]
      for future in concurrent.futures.as_completed(futures):
        results.append(_logged(future.result(), log))
  _write_face_model(out, jobs, options)
  bad = sorted((r for r in results if r["status"] == "bad"), key=lambda r: r["clip"])
  summary = dict(
      source=str(source), out=str(out), mode=mode, videos=len(jobs), skipped=skipped,
      done=sum(r["status"] == "done" for r in results), bad=len(bad),
      bad_files={r["clip"]: r["reason"] for r in bad},
      prepared_total=sum(is_done(j) for j in jobs),
      frames=sum(r.get("frames", 0) for r in results), workers=workers,
      seconds=round(time.perf_counter() - tic, 2))
  _write_text(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
  if tfds_out is not None and summary["prepared_total"]:
    from data_pipelines.speech import tfds as speech_tfds  # TensorFlow only when asked for.
    summary["tfds"] = speech_tfds.build(out, tfds_out)
    _write_text(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
  return summary


def _logged(result: dict[str, Any], log) -> dict[str, Any]:
  detail = f"{result['frames']} frames" if result["status"] == "done" else result["reason"]
  log(f"grid: {result['clip']}: {result['status']} ({detail}, {result['seconds']} s)")
  return result


def _write_face_model(out: pathlib.Path, jobs: list[VideoJob], options: PrepareOptions) -> None:
  """out/face_model.npz: the 3DMM every clip was fitted with (copied from a finished clip)."""
  target = out / speech_layout.FACE_MODEL
  found = next((j.out / speech_layout.FACE_MODEL for j in jobs
                if (j.out / speech_layout.FACE_MODEL).is_file()), None)
  if found is not None and not target.exists():
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.copyfile(found, tmp)
    os.replace(tmp, target)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--source", required=True, help="GRID root (s1 ... s34) or video folder")
  parser.add_argument("--out", required=True, help="speech-layout root to write")
  parser.add_argument("--mode", default="grid", choices=MODES)
  parser.add_argument("--workers", type=int, default=1, help="processes (0: in this process)")
  parser.add_argument("--speakers", default=None, help="comma-separated GRID speakers")
  parser.add_argument("--limit", type=int, default=None, help="at most this many new videos")
  parser.add_argument("--tfds", default=None, help="also build ArrayRecord shards here")
  parser.add_argument("--size", type=int, default=PrepareOptions.size, help="face crop side")
  parser.add_argument("--min_seconds", type=float, default=PrepareOptions.min_seconds)
  parser.add_argument("--face_model", default=None, help="3DMM .npz (default: built-in)")
  parser.add_argument("--fit_steps", type=int, default=None)
  parser.add_argument("--rigid_steps", type=int, default=None)
  parser.add_argument("--focal_steps", type=int, default=None)
  parser.add_argument("--preview", action="store_true", help="write preview.mp4 per video")
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  options = PrepareOptions(size=args.size, min_seconds=args.min_seconds,
                           face_model=args.face_model, fit_steps=args.fit_steps,
                           rigid_steps=args.rigid_steps, focal_steps=args.focal_steps,
                           preview=args.preview)
  try:
    summary = run(args.source, args.out, mode=args.mode, workers=args.workers, options=options,
                  speakers=args.speakers.split(",") if args.speakers else None,
                  limit=args.limit, tfds_out=args.tfds,
                  log=lambda line: print(line, file=sys.stderr, flush=True))
  except ValueError as e:
    print(f"grid: error: {e}", file=sys.stderr)
    return 2
  print(json.dumps({k: v for k, v in summary.items() if k != "bad_files"}), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
