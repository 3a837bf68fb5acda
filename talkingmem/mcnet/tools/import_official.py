"""Converts an official MCNet checkpoint (PyTorch) into a talkingmem workdir that every command reads.

  python -m talkingmem.mcnet.tools.import_official --checkpoint 00000099-checkpoint.pth.tar --out workdirs/vox
  python -m talkingmem.mcnet.tools.import_official --checkpoint kp.npz --generator_checkpoint gen.npz --out W
  python -m talkingmem.mcnet.tools.import_official --checkpoint fomm-vox.pth.tar --out W --image_size 256 \
      --detector_only

The output is a workdir: `W/config.json` (configs/mcnet.py's paper config with the model sizes read
from the tensor shapes) and an Orbax checkpoint at step 0 holding the model variables, so
`--mode=animate|eval|export --workdir=W` work on it (`eval` also needs `--data_root` for real data).
Training does not resume from it: there is no optimizer state.

FOMM checkpoints share MCNet's keypoint detector but not its generator. Their generator is refused,
naming every key that does not map; `--detector_only` then imports only the keypoint detector (and
`--mode=export` exports only keypoint detection from it).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from data_pipelines.user_errors import ArgumentParser, UserInputError, check_output, run_cli
from talkingmem import checkpointing
from talkingmem.mcnet import official
from talkingmem.mcnet.model import MCNet

DETECTOR = "kp_detector"


def _template(config: ml_collections.ConfigDict) -> dict:
  model = MCNet(config)
  x = jnp.zeros((1, config.image_size, config.image_size, config.num_channels), jnp.float32)
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, x))


def _detector_template(template: dict) -> dict:
  return {col: {DETECTOR: tree[DETECTOR]} for col, tree in template.items() if DETECTOR in tree}


def convert(state_dicts: dict, image_size: int | None = None, detector_only: bool = False
            ) -> tuple[dict, ml_collections.ConfigDict]:
  """(variables, model config) from official state dicts; only the detector's with `detector_only`.

  Raises official.StateDictMismatch naming what does not map (and whether the detector alone would).
  """
  config = official.infer_config(state_dicts, image_size)
  template = _template(config)
  if not detector_only:
    try:
      return official.from_official(state_dicts, config, template), config
    except official.StateDictMismatch as e:
      try:
        _convert_detector(state_dicts, config, template)
      except official.StateDictMismatch:
        raise e from None
      raise official.StateDictMismatch(
          f"{e}\nThe keypoint detector maps (a FOMM-style checkpoint?) but the generator is not "
          "MCNet's; pass --detector_only to import the detector alone.") from None
  return _convert_detector(state_dicts, config, template), config


def _convert_detector(state_dicts: dict, config: ml_collections.ConfigDict, template: dict) -> dict:
  # No generator buffers are expected when the dense-motion network does not downsample.
  detector_config = ml_collections.ConfigDict(config.to_dict())
  detector_config.dense_motion.scale_factor = 1
  return official.from_official({DETECTOR: state_dicts[DETECTOR]}, detector_config,
                                _detector_template(template))


def run_config(model: ml_collections.ConfigDict, source: dict) -> ml_collections.ConfigDict:
  """configs/mcnet.py's paper config with this model: data settings for eval, a record of the source."""
  path = pathlib.Path(__file__).resolve().parents[3] / "configs" / "mcnet.py"
  spec = importlib.util.spec_from_file_location("talkingmem_configs_mcnet", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("paper")
  config.model = model
  config.data.image_size = int(model.image_size)
  config.imported_from = source
  return config


def import_checkpoint(checkpoint: str | pathlib.Path, out: str | pathlib.Path,
                      generator_checkpoint: str | pathlib.Path | None = None, image_size: int | None = None,
                      detector_only: bool = False) -> dict:
  """Writes `out`/config.json and the Orbax checkpoint (step 0); returns a summary."""
  out = check_output(out, "--out", (checkpoint, generator_checkpoint), folder_ok=True)
  state_dicts = official.load_state_dicts(checkpoint, generator_checkpoint)
  variables, model_config = convert(state_dicts, image_size, detector_only)
  modules = [DETECTOR] if detector_only else list(official.MODULES)
  source = {"checkpoint": str(checkpoint), "generator_checkpoint": str(generator_checkpoint or ""),
            "modules": modules}
  variables = jax.tree.map(lambda a: np.asarray(a, np.float32), variables)
  state = {"step": np.zeros((), np.int32), "params": variables["params"],
           "model_state": {k: v for k, v in variables.items() if k != "params"}}
  created = not out.exists()
  out.mkdir(parents=True, exist_ok=True)
  try:  # config.json last: a workdir is complete only with it (an interrupted import leaves no half).
    manager = checkpointing.make_manager(out, keep=1, async_save=False)
    checkpointing.save(manager, 0, state, None, force=True)
    manager.wait_until_finished()
    manager.close()
    checkpointing.save_config(out, run_config(model_config, source))
  except BaseException:
    shutil.rmtree(out if created else checkpointing.checkpoint_dir(out), ignore_errors=True)
    raise
  return {"workdir": str(out), "modules": modules, "image_size": int(model_config.image_size),
          "num_kp": int(model_config.num_kp), "use_memory": bool(model_config.use_memory),
          "num_params": int(sum(np.size(x) for x in jax.tree.leaves(variables["params"])))}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  # argparse, not absl flags: tests import this module beside others that define --checkpoint / --out.
  parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True,
                      help="Official .pth.tar (or .npz of kp_detector/... and generator/... keys, or the "
                           "keypoint detector's .npz when --generator_checkpoint is given).")
  parser.add_argument("--generator_checkpoint", help="The generator's .npz, when the two are separate files.")
  parser.add_argument("--out", required=True, help="Output workdir (created; must not hold checkpoints).")
  parser.add_argument("--image_size", type=int,
                      help="Image size, for checkpoints without memory layers to read it from.")
  parser.add_argument("--detector_only", action="store_true",
                      help="Import only the keypoint detector (FOMM-style checkpoints).")
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
  args = parse_args(argv)
  if args.image_size is not None and args.image_size < 8:
    raise UserInputError(f"--image_size={args.image_size} must be >= 8")
  summary = import_checkpoint(args.checkpoint, args.out, args.generator_checkpoint, args.image_size,
                              args.detector_only)
  print(json.dumps(summary, indent=1))


if __name__ == "__main__":
  run_cli(main)
