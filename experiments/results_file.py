"""Atomic writes and marked sections of experiments/RESULTS.md, shared by the experiment scripts."""
from __future__ import annotations

import os
import pathlib
import tempfile


def write_atomic(path: pathlib.Path, text: str) -> None:
  """Writes `text` to a temporary file beside `path` and renames it, so a reader never sees half a file."""
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
  with os.fdopen(fd, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_section(path: pathlib.Path, start: str, end: str, heading: str, body: str) -> None:
  """Replaces the text between the `start` / `end` markers of `path` (appended under `heading` when
  absent), keeping the rest of the file."""
  text = path.read_text() if path.exists() else "# Results\n"
  section = f"{start}\n{body.rstrip()}\n{end}"
  if start in text and end in text:
    text = text[:text.index(start)] + section + text[text.index(end) + len(end):]
  else:
    text = text.rstrip() + f"\n\n## {heading}\n\n" + section + "\n"
  write_atomic(path, text)
