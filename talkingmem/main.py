"""Command-line entry point: `python -m talkingmem.main --mode=MODE [flags]`.

  python -m talkingmem.main --config=configs/mcnet.py:demo --workdir=workdirs/demo    # train
  python -m talkingmem.main --config=configs/mcnet.py --mode=info
  python -m talkingmem.main --mode=eval --workdir=W [--pairs=pairs.csv] [--face_metrics]
  python -m talkingmem.main --mode=animate --checkpoint=vox.pth.tar --source=img.png --driving=v.mp4 --output=out.mp4
  python -m talkingmem.main --mode=live --workdir=W --source=img.png --camera=0
  python -m talkingmem.main --mode=speak --a2e_workdir=A --renderer_workdir=R --audio=x.wav --template=DIR --output=o.mp4
  python -m talkingmem.main --mode=export --workdir=W --export_dir=D

Each mode lives in its own module (the MODES table), which declares its flags in `define_flags()`
and runs in `run(config)`; only the chosen mode's flags exist, so `--mode=animate --help` lists them.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any

from absl import app, flags
import jax
from ml_collections import config_flags

from data_pipelines.user_errors import UserInputError, error_text, parse_absl_flags, run_cli
from talkingmem import console

# Mode -> module with define_flags() and run(config); imported only when chosen.
MODES = {
    "train": "talkingmem.train_command",
    "export": "talkingmem.export_command",
    "info": "talkingmem.mcnet.info_command",
    "eval": "talkingmem.mcnet.eval_command",
    "animate": "talkingmem.mcnet.animate_command",
    "live": "talkingmem.mcnet.live_command",
    "speak": "talkingmem.memface.speak_command",
    "app": "talkingmem.app.app_command",
}
DEFAULT_MODE = "train"


def chosen_mode(argv: list[str]) -> str:
  """The --mode value in argv (absl parses flags only after every mode's flags are declared)."""
  for i, arg in enumerate(argv):
    if arg.startswith("--mode="):
      return arg.split("=", 1)[1]
    if arg == "--mode" and i + 1 < len(argv):
      return argv[i + 1]
  return DEFAULT_MODE


def define_common_flags(mode: str) -> None:
  config_flags.DEFINE_config_file("config", None, "Config file, `path.py` or `path.py:variant`.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries and outputs.")
  flags.DEFINE_enum("mode", mode, list(MODES), "What to run; `--mode=M --help` lists M's flags.")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing as in every tool, plus the errors ml_collections raises while parsing a --config.*
  override (a typo: KeyError with its "did you mean" hint; a wrong value: TypeError, ValueError)."""
  try:
    return parse_absl_flags(argv)
  except UserInputError:
    raise
  except (KeyError, AttributeError, TypeError, ValueError) as e:
    raise UserInputError(f"bad --config.* override: {error_text(e)}") from e


def loaded_config() -> Any:
  """FLAGS.config; ml_collections reports a config file that failed to load only on first use."""
  config = flags.FLAGS.config
  if config is not None:
    try:
      config.get("task")
    except OSError as e:
      raise UserInputError(f"--config={flags.FLAGS['config'].config_filename}: cannot load it "
                           f"({error_text(e).split('; ')[-1]})") from e
  return config


def main() -> None:
  run_cli(dispatch)


def dispatch() -> None:
  mode = chosen_mode(sys.argv[1:])
  if mode not in MODES:
    raise UserInputError(f"unknown --mode={mode}; choose from {', '.join(MODES)}")
  console.quiet_native_logs(sys.argv[1:])
  command = importlib.import_module(MODES[mode])
  define_common_flags(mode)
  command.define_flags()
  flags.adopt_module_key_flags(command)  # --help lists the mode's flags.

  def run(argv: list[str]) -> None:
    if len(argv) > 1:
      raise UserInputError(f"unexpected arguments {argv[1:]}; flags are written --name=value")
    # Library INFO logs to a file (--verbosity=1 keeps them on the terminal): in the workdir only when this
    # run trains into it; other modes read a workdir as input and leave it byte-identical.
    console.route_logs(flags.FLAGS.workdir if mode == "train" else None, mode)
    command.run(loaded_config())

  jax.config.config_with_absl()
  app.run(run, flags_parser=parse_flags)


if __name__ == "__main__":
  main()
