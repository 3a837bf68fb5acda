"""Builds a talking-head TFDS dataset (ArrayRecord) from a FOMM-layout folder.

  python -m data_pipelines.fomm.prepare --dataset voxceleb --source VOX_PNG_ROOT \
      --out ~/tensorflow_datasets [--encoding jpeg] [--image_size 256]

Works offline. Stdout is one JSON line: builder dir, videos
and frames per split, and skipped videos with their reasons.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import pathlib
import shutil
import sys

from data_pipelines.fomm import tfds_builders
from data_pipelines.user_errors import ArgumentParser, UserInputError, check_writable, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", required=True, choices=sorted(tfds_builders.BUILDERS))
  parser.add_argument("--source", required=True, help="FOMM-layout root folder")
  parser.add_argument("--out", required=True, help="TFDS data_dir to write into")
  parser.add_argument("--encoding", default="png", choices=("png", "jpeg"))
  parser.add_argument("--image_size", type=int, default=None,
                      help="resize frames to this square size (default: keep)")
  parser.add_argument("--jpeg_quality", type=int, default=95)
  args = parser.parse_args(argv)
  check_args(args)
  return args


def check_args(args: argparse.Namespace) -> None:
  """Every argument before any work: sizes, quality, the source folder and a writable --out."""
  if args.image_size is not None and args.image_size < 8:
    raise UserInputError(f"--image_size={args.image_size} must be >= 8 (or left out to keep the frames' size)")
  if not 1 <= args.jpeg_quality <= 100:
    raise UserInputError(f"--jpeg_quality={args.jpeg_quality} must be within 1..100")
  source = pathlib.Path(args.source)
  if not source.is_dir():
    raise UserInputError(f"--source={args.source} is not a folder; give the FOMM-layout dataset root")
  if not any(p for p in source.iterdir() if not p.name.startswith(".")):
    raise UserInputError(f"--source={args.source} is empty; give the FOMM-layout dataset root "
                         "(train/ and test/ folders of videos)")
  check_writable(args.out, "--out")


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
  # TFDS prints progress to stdout; keep stdout for the JSON result alone.
  created = not pathlib.Path(args.out).exists()
  try:  # TFDS renames a split into place only when complete; a failed first build leaves no --out.
    with contextlib.redirect_stdout(sys.stderr):
      result = tfds_builders.build(
          args.dataset, args.source, args.out, encoding=args.encoding,
          image_size=args.image_size, jpeg_quality=args.jpeg_quality)
  except BaseException:
    if created:
      shutil.rmtree(args.out, ignore_errors=True)
    raise
  print(json.dumps(result, sort_keys=True), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(run_cli(main))
