"""The quiet terminal: a tiny training run shows a bar, an eval line and a summary, and no library INFO."""
import os
import pathlib
import re
import subprocess
import sys

from talkingmem import console

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_tiny_training_terminal_is_quiet_and_ends_with_a_summary(tmp_path):
  workdir, data = tmp_path / "run", tmp_path / "data"
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell
  proc = subprocess.run(
      [sys.executable, "-m", "talkingmem.main", "--config=configs/mcnet.py:tiny", f"--workdir={workdir}",
       f"--config.data.root={data}", "--config.train.num_steps=2", "--config.train.eval_every=2",
       "--config.train.image_every=0", "--config.train.checkpoint_every=2"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  terminal = proc.stdout + proc.stderr
  assert proc.returncode == 0, terminal[-3000:]
  info_lines = [l for l in terminal.splitlines() if re.match(r"I\d{4} |I0000 ", l)]
  assert not info_lines, info_lines[:5]
  assert "orbax" not in terminal.lower() and "oneDNN" not in terminal
  assert "train  loss" in proc.stderr and "step/s" in proc.stderr  # the bar
  assert "eval at step 2: l1 " in proc.stdout
  rows = dict(re.findall(r"^  (\S+(?: \S+)*?)\s{2,}(\S.*)$", proc.stdout.split("done:")[1], re.M))
  assert rows["checkpoints"] == str(workdir / "checkpoints")
  assert pathlib.Path(rows["animation"]).is_file()  # from the task's after_training summary
  assert re.match(r"held-out L1 \d\.\d{4} \(deformed source \d\.\d{4}, still source \d\.\d{4}: "
                  r"\d\.\d\dx\)", rows["result"]), rows["result"]
  assert len(terminal.splitlines()) <= 60  # one screen (the bound for the whole demo)
  log = (workdir / console.LOG_NAME).read_text()
  assert "checkpoint" in log and "train.py" in log  # the library logs went to the file


def test_verbosity_flag_keeps_absl_logs():
  assert console.loud(["--verbosity=1"]) and console.loud(["-v", "0"])
  assert not console.loud(["--config=x.py"]) and not console.loud(["--verbosity=-1"])


def test_output_paths_of_a_task_summary(tmp_path):
  (tmp_path / "a.mp4").write_bytes(b"")
  (tmp_path / "sheet.png").write_bytes(b"")
  summary = {"evaluation": {"l1": 0.1}, "animation": {"path": str(tmp_path / "a.mp4"), "frames": 3},
             "contact_sheet": str(tmp_path / "sheet.png"), "missing": str(tmp_path / "nope.png")}
  assert console.output_paths(summary) == [("animation", str(tmp_path / "a.mp4")),
                                           ("contact_sheet", str(tmp_path / "sheet.png"))]
