"""Atomic writes and marked sections of experiments/RESULTS.md, shared by the experiment scripts."""
from __future__ import annotations

import os
import pathlib
import tempfile


def write_atomic(path: pathlib.Path, text: str) -> None:
  """Writes `text` to a temporary file beside `path` and renames it, so a reader never sees half a file."""
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
  # mkstemp makes the file owner-only (0600); give it the mode a plain write would have left.
  os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~current_umask())
  with os.fdopen(fd, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def current_umask() -> int:
  mask = os.umask(0)  # the only way to read it is to set it
  os.umask(mask)
  return mask


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
