"""End-to-end `speak` on a synthetic clip with tiny randomly initialised checkpoints: a playable mp4
at 25 fps with an AAC audio stream of the input's duration; template looping and input errors."""
import importlib.util
import pathlib
import re
import subprocess

import imageio_ffmpeg
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import signal
from scipy.io import wavfile

from data_pipelines import video_io

from data_pipelines.speech import renderer_inputs

from data_pipelines.speech import layout as speech_layout
from data_pipelines.synthetic.engine import face_model as face_model_lib
from talkingmem import checkpointing
from talkingmem.memface import speak
from talkingmem.memface import a2e, renderer
from data_pipelines.speech import explicit_memory

SIZE = 32
REPO = pathlib.Path(__file__).resolve().parents[1]


def _write_workdir(workdir: pathlib.Path, config: ml_collections.ConfigDict, variables: dict) -> None:
  """A workdir as the trainer leaves it: config.json and an Orbax checkpoint of the train state."""
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  state = {"step": np.int32(1), "params": params, "opt_state": {}, "model_state": model_state,
           "skipped_steps": np.int32(0)}
  workdir.mkdir(parents=True)
  checkpointing.save_config(workdir, config)
  manager = checkpointing.make_manager(workdir, async_save=False)
  checkpointing.save(manager, 1, state, None)
  manager.wait_until_finished()
  manager.close()


def _synthetic_clip(data: pathlib.Path, frames: int = 60) -> pathlib.Path:
  """A clip folder in the synthetic layout (no espeak: tones for audio, the shaded 3D face as video)."""
  model = face_model_lib.build_face_model()
  data.mkdir(parents=True)
  model.save(data / speech_layout.FACE_MODEL)
  rng = np.random.default_rng(0)
  t = np.arange(frames) / 25.0
  rates, phases = rng.uniform(1, 3, model.n_exp), rng.uniform(0, 1, model.n_exp)
  exp = 0.3 * np.sin(2 * np.pi * (t[:, None] * rates + phases))
  identity = 0.5 * rng.standard_normal(model.n_id)
  pose = np.zeros((frames, 6))
  pose[:, 0], pose[:, 5] = 0.2 * np.sin(t), 1.0
  s = np.arange(frames * 640) / 16000.0
  audio = 0.3 * np.sin(2 * np.pi * 220 * s) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * s))
  clip = data / "spk000" / "clip0000"
  speech_layout.write_clip(clip, audio, exp, identity, pose=pose, exp_names=model.exp_names)
  video = [renderer_inputs.renderer_example(np.zeros((SIZE, SIZE, 3), np.uint8), model, exp[i], identity,
                                            pose[i], SIZE)["rendered"] for i in range(frames)]
  video_io.write_video(clip / "video.mp4", np.stack(video), 25.0, audio_path=clip / "audio.wav")
  return clip


def _random_like(shapes) -> dict:
  """Random variables of the given shapes without compiling init: N(0, 1/fan_in) weights, unit
  scales, zero biases (a smoke test needs finite outputs, not a trained model)."""
  rng = np.random.default_rng(0)
  def leaf(path, x):
    name = getattr(path[-1], "key", "")
    if name == "scale":
      return np.ones(x.shape, np.float32)
    if name == "bias" or x.ndim < 2:
      return np.zeros(x.shape, np.float32)
    return (rng.standard_normal(x.shape) / np.sqrt(np.prod(x.shape[:-1]))).astype(np.float32)
  return jax.tree_util.tree_map_with_path(leaf, shapes)


def _config(name: str, variant: str) -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location(name[:-3], REPO / "configs" / name)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("speak")
  data = root / "data"
  clip = _synthetic_clip(data)

  config = _config("memface_a2e.py", "tiny")
  config.data.root = str(data)
  m = config.model.to_dict()
  m["conv_features"] = tuple(m["conv_features"])
  model = a2e.AudioToExpression(num_coeffs=len(config.data.exp_components), **m)
  audio = jnp.zeros((1, config.data.window, config.data.feature_window, 80))
  _write_workdir(root / "a2e", config, _random_like(jax.eval_shape(model.init, jax.random.PRNGKey(0), audio)))

  rconfig = _config("memface_renderer.py", "tiny")  # 32 px, N = 8 memory slots of 8 px
  n, p = rconfig.model.memory_size, rconfig.model.patch_size
  memory = {"keys": jnp.zeros((n, 90)), "values": jnp.zeros((n, p, p, 3)), "key_scale": 1.0}
  image = jnp.zeros((1, SIZE, SIZE, 3))
  params = _random_like(jax.eval_shape(renderer.NeuralRenderer(rconfig.model).init, jax.random.PRNGKey(1),
                                        image, image, jnp.zeros((1, 90)), memory))["params"]
  _write_workdir(root / "renderer", rconfig, {"params": {"renderer": params}})

  # 2 s of the clip's speech as 22.05 kHz stereo: speak must resample it.
  wave = speech_layout.read_audio(clip / "audio.wav")[:32000]
  stereo = np.stack([signal.resample_poly(wave, 441, 320)] * 2, 1)
  audio_path = root / "speech.wav"
  wavfile.write(audio_path, 22050, (stereo * 32767).astype(np.int16))
  return dict(root=root, clip=clip, audio=audio_path)


def _probe(path):
  out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                       capture_output=True, text=True).stderr
  h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", out).groups()
  return out, 3600 * int(h) + 60 * int(m) + float(s)


def test_speak_writes_mp4_with_audio(setup, caplog):
  out_path = setup["root"] / "out.mp4"
  summary = speak.speak(setup["root"] / "a2e", setup["root"] / "renderer", setup["audio"], setup["clip"],
                        out_path, options=speak.SpeakOptions(progress=False))
  assert summary["frames"] == 50 and summary["size"] == SIZE and not summary["template_looped"]
  # Without SyncNet weights the sync scores are reported unavailable, with what to supply.
  assert summary["sync"]["sync_c"] is None and "syncnet_v2.model" in summary["sync"]["unavailable"]
  assert "resampled to 16 kHz" in caplog.text
  info, duration = _probe(out_path)
  assert re.search(r"Stream #.*Video: h264.*\b32x32\b.*25 fps", info), info
  assert re.search(r"Stream #.*Audio: aac", info), info
  assert abs(duration - 2.0) < 0.1
  frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out_path))
  assert frames == 50
  assert (setup["root"] / "a2e" / speak.STATS_FILE).is_file()  # cached statistics


def test_ping_pong():
  np.testing.assert_array_equal(speak.ping_pong(9, 3), [0, 1, 2, 1, 0, 1, 2, 1, 0])
  np.testing.assert_array_equal(speak.ping_pong(3, 1), [0, 0, 0])
  np.testing.assert_array_equal(speak.ping_pong(2, 5), [0, 1])


def test_input_errors(setup, tmp_path):
  with pytest.raises(speak.SpeakInputError, match="no coeffs.npz"):
    speak.load_template(tmp_path)
  with pytest.raises(speak.SpeakInputError, match="does not exist"):
    speak.read_audio(tmp_path / "missing.wav")
  with pytest.raises(speak.SpeakInputError, match="'memface_a2e' run, expected 'memface_renderer'"):
    speak.load_stage2(setup["root"] / "a2e")
  bad = explicit_memory.build_explicit_memory(np.random.rand(4, 30, 3), np.zeros((4, SIZE, SIZE, 3)),
                                              np.tile([0, 0, 8, 8], (4, 1)), n=4)
  explicit_memory.save_explicit_memory(tmp_path / "bad.npz", bad)
  with pytest.raises(ValueError, match="4 slots, the model expects 8"):
    speak.speak(setup["root"] / "a2e", setup["root"] / "renderer", setup["audio"], setup["clip"],
                tmp_path / "x.mp4", memory_path=tmp_path / "bad.npz",
                options=speak.SpeakOptions(progress=False))
