"""A quiet terminal: library INFO logs go to a file, the terminal keeps progress bars and summaries.

Orbax, absl, TensorFlow, XLA and grain log hundreds of INFO lines per run; a person wants a progress
bar, one line per evaluation and, at the end, where the outputs are. `route_logs` sends every Python
log record (absl's included) to `<workdir>/talkingmem.log` and lets only warnings reach the terminal.
absl's own `--verbosity=N` (N >= 0, e.g. `--verbosity=1`) keeps absl's usual behaviour: all of it on
the terminal.
"""
from __future__ import annotations

import logging as std_logging
import os
import pathlib
import tempfile
from typing import Any, Iterable, Mapping, Sequence

from absl import flags, logging
import tqdm

LOG_NAME = "talkingmem.log"


def loud(argv: Sequence[str]) -> bool:
  """Whether the user asked for absl's verbose logs (`--verbosity=N`, N >= 0, or `-v N`)."""
  for i, arg in enumerate(argv):
    value = None
    if arg.startswith("--verbosity="):
      value = arg.split("=", 1)[1]
    elif arg in ("--verbosity", "-v") and i + 1 < len(argv):
      value = argv[i + 1]
    if value is not None:
      try:
        return int(value) >= 0
      except ValueError:
        return True  # absl rejects it with its own message
  return False


def quiet_native_logs(argv: Sequence[str]) -> None:
  """TensorFlow's C++ INFO lines are printed before Python runs any handler, so they are silenced
  through the environment, before TensorFlow is imported. Its oneDNN note ignores TF_CPP_MIN_LOG_LEVEL
  and goes only with oneDNN: TensorFlow here only writes TensorBoard events and reads TFDS records,
  so its oneDNN kernels are switched off (JAX, which does the maths, is unaffected)."""
  if not loud(argv):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def route_logs(workdir: str | None, mode: str) -> pathlib.Path | None:
  """Python logs at INFO into a file in `workdir` (the temp folder while it does not exist yet, so a run
  refused for bad input leaves nothing behind; `adopt_workdir` moves the log in once the run made it);
  the terminal shows warnings only. Returns the log file, or None when --verbosity asked for the usual
  absl output."""
  if flags.FLAGS["verbosity"].present and flags.FLAGS.verbosity >= 0:
    return None
  if workdir and pathlib.Path(workdir).is_dir():
    path = pathlib.Path(workdir) / LOG_NAME
  else:
    path = pathlib.Path(tempfile.gettempdir()) / f"talkingmem-{mode}-{os.getpid()}.log"
  logging.set_verbosity(logging.INFO)  # records reach the handlers; each handler filters itself
  logging.get_absl_handler().setLevel(std_logging.WARNING)
  install_log_file(path)
  return path


def install_log_file(path: pathlib.Path) -> None:
  """Sends INFO records to `path` (appending), replacing the log file installed before."""
  root = std_logging.getLogger()
  for handler in list(root.handlers):
    if isinstance(handler, std_logging.FileHandler) and handler.baseFilename == active_log_file():
      root.removeHandler(handler)
      handler.close()
  file_handler = std_logging.FileHandler(path, encoding="utf-8")
  file_handler.setFormatter(logging.PythonFormatter())
  file_handler.setLevel(std_logging.INFO)
  root.addHandler(file_handler)


def adopt_workdir(workdir: str | pathlib.Path) -> None:
  """Moves a temporary log (started before the workdir existed) into `workdir`/LOG_NAME."""
  current = active_log_file()
  target = pathlib.Path(workdir) / LOG_NAME
  if current is None or pathlib.Path(current) == target:
    return
  install_log_file(target)
  with open(target, "a", encoding="utf-8") as out:
    out.write(pathlib.Path(current).read_text(encoding="utf-8"))
  pathlib.Path(current).unlink(missing_ok=True)


def format_metrics(values: Mapping[str, Any], limit: int = 6) -> str:
  """`name value` pairs, 4 significant digits, at most `limit` of them (the rest: TensorBoard)."""
  items = [(k, v) for k, v in values.items() if isinstance(v, (int, float)) or hasattr(v, "__float__")]
  text = "  ".join(f"{k} {float(v):.4g}" for k, v in items[:limit])
  return text + ("  ..." if len(items) > limit else "")


def output_paths(outputs: Any, name: tuple[str, ...] = ()) -> list[tuple[str, str]]:
  """(name, path) for every existing file or folder named in a nested summary (dicts and lists).

  Tasks return summaries of what they wrote after training; whatever they add (an animation, a contact
  sheet) is listed without this module knowing their keys. `{"animation": {"path": p}}` -> animation.
  """
  if isinstance(outputs, Mapping):
    return [row for key, value in outputs.items() for row in output_paths(value, name + (str(key),))]
  if isinstance(outputs, (list, tuple)):
    return [row for value in outputs for row in output_paths(value, name)]
  if isinstance(outputs, (str, os.PathLike)) and os.sep in str(outputs) and len(str(outputs)) < 4096:
    if pathlib.Path(outputs).exists():
      label = ".".join(n for n in name if n not in ("path", "output")) or "output"
      return [(label, str(outputs))]
  return []


def table(rows: Iterable[tuple[str, str]], title: str) -> str:
  """A two-column table for the end of a run."""
  rows = list(rows)
  width = max((len(name) for name, _ in rows), default=0)
  lines = [title] + [f"  {name.ljust(width)}  {value}" for name, value in rows]
  return "\n".join(lines)


class StepBar:
  """The training progress bar: steps, loss, steps/s and ETA on one line (tqdm), process 0 only."""

  def __init__(self, total_steps: int, first_step: int, enabled: bool = True):
    self.bar = tqdm.tqdm(total=total_steps, initial=first_step, unit="step", desc="train",
                         disable=not enabled, dynamic_ncols=True, smoothing=0.1,
                         bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {rate_fmt} ETA {remaining}")

  def step(self, loss: float | None = None) -> None:
    self.bar.update(1)
    if loss is not None:
      self.bar.set_description_str(f"train  loss {loss:.4f}", refresh=False)

  def write(self, line: str) -> None:
    """A line above the bar (an evaluation), which keeps the bar at the bottom."""
    if not self.bar.disable:
      tqdm.tqdm.write(line)

  def close(self) -> None:
    self.bar.close()


def training_summary(workdir: str | pathlib.Path, step: int, outputs: Any, log_file: str | None
                     ) -> str:
  """Where a training run's outputs are: checkpoints, TensorBoard events, samples, task outputs."""
  workdir = pathlib.Path(workdir)
  rows = [("steps", str(step))]
  if isinstance(outputs, Mapping) and isinstance(outputs.get("headline"), str):
    rows.append(("result", outputs["headline"]))  # A task's one-line verdict (the demo's held-out L1).
  rows += [("checkpoints", str(workdir / "checkpoints")),
          ("TensorBoard events", f"{workdir}  (tensorboard --logdir {workdir})"),
          ("metrics (JSON lines)", str(workdir / "metrics.jsonl"))]
  if (workdir / "samples").is_dir():
    rows.append(("samples", str(workdir / "samples")))
  rows += output_paths(outputs or {})
  if log_file:
    rows.append(("library log", str(log_file)))
  return table(rows, "done:")


def active_log_file() -> str | None:
  """The file `route_logs` sends library logs to, if it did."""
  for handler in std_logging.getLogger().handlers:
    if isinstance(handler, std_logging.FileHandler) and pathlib.Path(handler.baseFilename).name.startswith(
        ("talkingmem", LOG_NAME)):
      return handler.baseFilename
  return None
