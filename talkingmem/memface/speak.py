"""Audio-driven talking head with MemFace: audio + a template video of the speaker -> mp4.

  python -m talkingmem.main --mode=speak --a2e_workdir=A --renderer_workdir=R --audio=x.wav \
      --template=SPEAKER_DIR --output=out.mp4 [--memory=speaker_memory.npz] \
      [--audio_features=feats.npy] [--face_model=face_model.npz]

What the user passes:
  --a2e_workdir       a stage-1 training workdir (configs/memface_a2e.py): config.json + checkpoints/;
  --renderer_workdir  a stage-2 training workdir (configs/memface_renderer.py);
  --audio             any audio (or video) file ffmpeg reads; other rates / channels are resampled to
                      16 kHz mono with a warning (the input file itself is muxed into the output);
  --audio_features    optional precomputed features, for stage-1 models trained on
                      'deepspeech' / 'hubert' / 'wav2vec' / 'windows' features (see
                      data_pipelines/audio.py for the layouts); 'mel' models need none;
  --template          the speaker's prepared folder: the output of data_pipelines/speech/prepare_speaker.py
                      (coeffs.npz with crop_focal / crop_principal, frames/) or a synthetic speech clip
                      folder (coeffs.npz, video.mp4); its coefficients give the identity, the head
                      pose and the non-mouth expressions (blinks, brows) of every output frame;
  --face_model        the 3DMM (default: face_model.npz in the template folder or up to two parents);
  --memory            the speaker's explicit memory .npz (default: built from the template's frames
                      by the paper's greedy selection, N from the renderer's config).

Steps: audio -> 16 kHz -> stage-1 features (standardised with the stage-1 training statistics, cached
in A/feature_stats.npz the first time, when its training data is still there) -> mouth expression
coefficients in overlapping windows of the training length (linear cross-fade) -> they replace the
template's mouth components frame by frame -> 3D face with the template's identity and pose ->
renderer inputs (shaded face, masked template frame, mouth vertices) -> renderer with the memory ->
the lower-face region pasted into the template frame -> mp4 at 25 fps with the input audio
(H.264 + AAC).

Templates shorter than the audio are played back and forth (0, 1, ..., N-1, N-2, ..., 1, 0, 1, ...),
so the head motion never jumps; a warning says so. The output has exactly ceil(25 x duration) frames.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from data_pipelines.user_errors import UserInputError, existing_file
from data_pipelines import video_io

from data_pipelines.speech import renderer_inputs

from data_pipelines.speech import layout as speech_layout
from data_pipelines.synthetic.engine import face_model as face_model_lib
from talkingmem import checkpointing
from data_pipelines import audio as audio_lib
from data_pipelines.speech import explicit_memory

FPS = 25
SAMPLE_RATE = 16000
STATS_FILE = "feature_stats.npz"


class SpeakInputError(UserInputError):
  """An input `speak` cannot use; the message names it and what to do."""


# --------------------------------------------------------------------------------------------------
# Audio.


def read_audio(path: str | pathlib.Path) -> np.ndarray:
  """Any audio (or video with audio) as float32 mono 16 kHz; warns when it resamples or mixes."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise SpeakInputError(f"audio file {path} does not exist")
  from scipy.io import wavfile  # pylint: disable=g-import-not-at-top
  try:
    rate, wave = wavfile.read(path, mmap=True)
    channels = 1 if wave.ndim == 1 else wave.shape[1]
  except (ValueError, OSError):  # Not a WAV scipy reads: let ffmpeg decode it.
    rate, channels = None, None
  if rate is None:
    with tempfile.TemporaryDirectory() as tmp:
      wav = pathlib.Path(tmp) / "audio.wav"
      try:
        video_io.extract_audio(path, wav, SAMPLE_RATE)
      except video_io.VideoReadError as e:
        raise SpeakInputError(f"cannot read audio from {path}: {e}") from e
      logging.warning("%s decoded and converted to 16 kHz mono by ffmpeg", path)
      return speech_layout.read_audio(wav)
  if rate != SAMPLE_RATE or channels != 1:
    logging.warning("%s is %d Hz with %d channel(s): resampled to 16 kHz mono (the models were "
                    "trained on 16 kHz)", path, rate, channels)
  wave = speech_layout.read_audio(path, SAMPLE_RATE)
  if not len(wave):
    raise SpeakInputError(f"{path} has no audio samples")
  return wave


# --------------------------------------------------------------------------------------------------
# Template.


@dataclasses.dataclass(frozen=True)
class Template:
  """A prepared speaker: frames and per-frame 3DMM coefficients and camera."""
  folder: pathlib.Path
  frames: np.ndarray  # (N, H, W, 3) uint8
  exp: np.ndarray  # (N, n_exp)
  id: np.ndarray  # (n_id,)
  pose: np.ndarray  # (N, 6)
  focal: np.ndarray | None  # (N,) pinhole focal per frame (prepare_speaker), None = synthetic camera
  principal: np.ndarray | None  # (N, 2)
  face_model: face_model_lib.FaceModel

  def __len__(self) -> int:
    return len(self.exp)

  def camera(self, index: int) -> dict[str, Any]:
    if self.focal is None:
      return {"focal": None, "principal": None}
    principal = None if self.principal is None else tuple(float(v) for v in self.principal[index])
    return {"focal": float(self.focal[index]), "principal": principal}


def find_face_model(folder: pathlib.Path, face_model: str | pathlib.Path | None = None
                    ) -> face_model_lib.FaceModel:
  if face_model:
    if not pathlib.Path(face_model).is_file():
      raise SpeakInputError(f"--face_model {face_model} does not exist")
    return face_model_lib.FaceModel.load(face_model)
  for candidate in (folder, folder.parent, folder.parent.parent):
    if (candidate / speech_layout.FACE_MODEL).is_file():
      return face_model_lib.FaceModel.load(candidate / speech_layout.FACE_MODEL)
  raise SpeakInputError(f"no {speech_layout.FACE_MODEL} in {folder} or its two parents: pass "
                        "--face_model (the 3DMM the template's coefficients were fitted with)")


def load_template(path: str | pathlib.Path, face_model: str | pathlib.Path | None = None
                  ) -> Template:
  """A prepare_speaker folder or a synthetic clip folder (or its video.mp4 / frames/ inside it)."""
  path = pathlib.Path(path)
  folder = path if path.is_dir() and (path / speech_layout.COEFFS).exists() else path.parent
  if not (folder / speech_layout.COEFFS).is_file():
    raise SpeakInputError(
        f"template {path}: no {speech_layout.COEFFS} there. Pass the speaker's prepared folder: "
        "the output of `python -m data_pipelines.speech.prepare_speaker --video talk.mp4 --out DIR` or a "
        "synthetic clip folder (coeffs.npz + video.mp4)")
  try:
    coeffs = speech_layout.read_coeffs(folder / speech_layout.COEFFS)
  except speech_layout.SpeechLayoutError as e:
    raise SpeakInputError(f"template: {e}") from e
  if "pose" not in coeffs:
    raise SpeakInputError(f"template {folder}/coeffs.npz has no per-frame 'pose'")
  with np.load(folder / speech_layout.COEFFS) as raw:
    focal = raw["crop_focal"].astype(np.float64) if "crop_focal" in raw.files else None
    principal = raw["crop_principal"].astype(np.float64) if "crop_principal" in raw.files else None
  video = path if path.is_file() or path.name == "frames" else None
  video = video or next((folder / n for n in ("frames", "video.mp4") if (folder / n).exists()), None)
  if video is None:
    raise SpeakInputError(f"template {folder} has neither frames/ nor video.mp4")
  try:
    frames = video_io.read_video(video)
  except video_io.VideoReadError as e:
    raise SpeakInputError(f"template video: {e}") from e
  if len(frames) != len(coeffs["exp"]):
    raise SpeakInputError(f"template {folder}: {len(frames)} frames in {video.name} but "
                          f"{len(coeffs['exp'])} in coeffs.npz; re-run the preparation")
  model = find_face_model(folder, face_model)
  if model.n_exp != coeffs["exp"].shape[1] or model.n_id != len(coeffs["id"]):
    raise SpeakInputError(f"the face model has {model.n_exp} expression / {model.n_id} identity "
                          f"components, the template {coeffs['exp'].shape[1]} / {len(coeffs['id'])}: "
                          "pass the --face_model it was fitted with")
  return Template(folder, frames, coeffs["exp"].astype(np.float32), coeffs["id"].astype(np.float32),
                  coeffs["pose"].astype(np.float64), focal, principal, model)


def ping_pong(num_out: int, num_template: int) -> np.ndarray:
  """Template frame of each output frame: forwards, then backwards, and so on."""
  if num_template == 1:
    return np.zeros(num_out, np.int64)
  period = 2 * (num_template - 1)
  t = np.arange(num_out) % period
  return np.where(t < num_template, t, period - t).astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Stage 1: audio -> mouth expression coefficients.


@dataclasses.dataclass
class Stage1:
  model: Any
  variables: dict
  config: ml_collections.ConfigDict
  exp_index: np.ndarray
  mean: np.ndarray
  std: np.ndarray
  step: int


def _stage1_stats(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Feature mean / std and the predicted components, from the training data (cached)."""
  path = workdir / STATS_FILE
  if path.is_file():
    with np.load(path) as data:
      return {k: data[k] for k in data.files}
  from data_pipelines.speech import pipelines as speech_pipelines  # pylint: disable=g-import-not-at-top
  try:
    store = speech_pipelines.open_store(config.data)
  except (speech_layout.SpeechLayoutError, FileNotFoundError, ValueError) as e:
    raise SpeakInputError(
        f"stage 1 standardises its audio features with statistics of its training data "
        f"({config.data.root}), which cannot be opened ({e}); copy {STATS_FILE} from a machine "
        f"that has the data into {workdir}") from e
  mean, std = store.feature_standardisation()
  stats = {"mean": mean, "std": std, "exp_index": np.asarray(store.exp_index, np.int64)}
  if jax.process_index() == 0:  # Written atomically: a half-written cache would be read next time.
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **stats)
    os.replace(tmp, path)
  return stats


def load_stage1(workdir: str | pathlib.Path, step: int | None = None) -> Stage1:
  from talkingmem.memface import a2e  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir)
  variables, config, step = _load(workdir, step, "memface_a2e", "--a2e_workdir")
  stats = _stage1_stats(workdir, config)
  m = config.model.to_dict()
  m["conv_features"] = tuple(m.get("conv_features", (32, 32, 64, 64)))
  num_coeffs = int(np.shape(variables["params"]["head"]["bias"])[0])
  if num_coeffs != len(stats["exp_index"]):
    raise SpeakInputError(f"{workdir}: the model predicts {num_coeffs} coefficients, its data "
                          f"selects {len(stats['exp_index'])}; delete {workdir / STATS_FILE}")
  model = a2e.AudioToExpression(num_coeffs=num_coeffs, **m)
  return Stage1(model, jax.tree.map(jnp.asarray, variables), config, stats["exp_index"],
                stats["mean"], stats["std"], step)


def _load(workdir: pathlib.Path, step: int | None, task: str, flag: str):
  try:
    variables, config, step = checkpointing.load_variables(workdir, step)
  except UserInputError as e:  # No workdir, no or damaged checkpoints: say which flag.
    raise SpeakInputError(f"{flag}: {e}") from e
  if config.get("task") != task:
    raise SpeakInputError(f"{flag}={workdir} is a {config.get('task')!r} run, expected {task!r}")
  return variables, config, step


def audio_windows(stage1: Stage1, wave: np.ndarray, num_frames: int,
                  features: str | pathlib.Path | None = None) -> np.ndarray:
  """(num_frames, W, D) standardised feature windows, as the stage-1 pipeline makes them."""
  data = stage1.config.data
  kind = data.get("feature", "mel")
  if kind == "mel":
    if features is not None:
      logging.warning("--audio_features ignored: the stage-1 model uses log-mel from the audio")
    windows = audio_lib.load_audio_features(wave, "mel", num_frames, int(data.feature_window))
  else:
    if features is None:
      raise SpeakInputError(f"the stage-1 model was trained on {kind!r} features: pass them with "
                            "--audio_features (one file for the whole audio)")
    loader_kind = {"windows": "deepspeech"}.get(kind, kind)
    try:
      windows = audio_lib.load_audio_features(str(features), loader_kind, num_frames,
                                              int(data.feature_window))
    except (ValueError, OSError) as e:
      raise SpeakInputError(f"--audio_features {features}: {e}") from e
  if windows.shape[-1] != len(stage1.mean):
    raise SpeakInputError(f"audio features have {windows.shape[-1]} dimensions, the stage-1 model "
                          f"{len(stage1.mean)}")
  return ((windows - stage1.mean) / stage1.std).astype(np.float32)


def predict_mouth(stage1: Stage1, windows: np.ndarray) -> np.ndarray:
  """(T, C) coefficients: overlapping windows of the training length, cross-faded linearly."""
  length = int(stage1.config.data.window)
  total = len(windows)
  hop = max(1, length // 2)
  starts = list(range(0, max(total - length, 0) + 1, hop))
  if starts[-1] + length < total:
    starts.append(total - length)
  index = np.minimum(np.arange(length)[None] + np.asarray(starts)[:, None], total - 1)
  mask = (np.arange(length)[None] + np.asarray(starts)[:, None]) < total
  out = stage1.model.apply(stage1.variables, jnp.asarray(windows[index]), jnp.asarray(mask))["coeffs"]
  out = np.asarray(out, np.float64)
  ramp = np.minimum(np.arange(1, length + 1), np.arange(length, 0, -1)).astype(np.float64)
  acc = np.zeros((total, out.shape[-1]))
  weight = np.zeros(total)
  for w, start in enumerate(starts):
    n = min(length, total - start)
    acc[start:start + n] += ramp[:n, None] * out[w, :n]
    weight[start:start + n] += ramp[:n]
  return (acc / weight[:, None]).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Stage 2: renderer.


@dataclasses.dataclass
class Stage2:
  model: Any
  variables: dict  # {'params': the renderer's params}
  state: dict  # the training state collections: stacked speaker memories / implicit statistics
  config: ml_collections.ConfigDict
  step: int
  workdir: pathlib.Path

  @property
  def image_size(self) -> int:
    return int(self.config.model.image_size)

  @property
  def memory_kind(self) -> str:
    return str(self.config.model.get("memory", "explicit"))


def load_stage2(workdir: str | pathlib.Path, step: int | None = None) -> Stage2:
  from talkingmem.memface import renderer  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir)
  variables, config, step = _load(workdir, step, "memface_renderer", "--renderer_workdir")
  params = variables["params"]
  params = params.get("renderer", params)  # The task keeps a discriminator beside it.
  state = {k: v for k, v in variables.items() if k != "params"}
  return Stage2(renderer.NeuralRenderer(config.model), {"params": jax.tree.map(jnp.asarray, params)},
                jax.tree.map(jnp.asarray, state), config, step, workdir)


def speaker_memory(stage2: Stage2, template: "Template", memory_path=None
                   ) -> tuple[dict[str, Any] | None, str]:
  """The renderer's memory argument and where it came from.

  explicit: --memory, else the renderer workdir's explicit_memory/<speaker>.npz for the template's
  speaker (folder name, or the parent's for a clip folder), else built from the template's frames;
  implicit: the query statistics saved with the checkpoint; none: nothing.
  """
  c = stage2.config.model
  if stage2.memory_kind == "none":
    return None, "none (renderer trained without memory)"
  if stage2.memory_kind == "implicit":
    return dict(stage2.state.get("memory_stats", {})) or None, "implicit (learned)"
  if not memory_path:
    for name in (template.folder.name, template.folder.parent.name):
      candidate = stage2.workdir / "explicit_memory" / f"{name}.npz"
      if candidate.is_file():
        memory_path = candidate
        break
  if memory_path:
    memory = explicit_memory.load_explicit_memory(memory_path, size=int(c.memory_size),
                                                  patch_size=int(c.patch_size))
    source = str(memory_path)
  else:
    memory = template_memory(template, stage2)
    source = f"built from the template's {len(template)} frames"
  key_dim = 3 * len(template.face_model.mouth_vertex_ids)
  if memory["keys"].shape[1] != key_dim:
    raise SpeakInputError(f"the memory {source} has keys of {memory['keys'].shape[1]} coordinates, "
                          f"the face model's mouth {key_dim}: a memory of another face model?")
  return {k: jnp.asarray(v) for k, v in memory.items() if k in explicit_memory.ARRAYS}, source


def template_memory(template: Template, stage2: Stage2, indices: np.ndarray | None = None
                    ) -> dict[str, np.ndarray]:
  """The explicit memory built from the template's own frames (the speaker's video)."""
  c = stage2.config.model
  size = stage2.image_size
  indices = np.arange(len(template)) if indices is None else indices
  verts, boxes, frames = [], [], []
  model = template.face_model
  patch = int(c.patch_size)
  for i in indices:
    xy, _, _ = renderer_inputs.camera_vertices(model.vertices(template.id), template.pose[i], size,
                                               **_scaled_camera(template, i, size))
    boxes.append(renderer_inputs.mouth_box(xy, model, size, patch))
    verts.append(model.vertices(template.id, template.exp[i])[model.mouth_vertex_ids])
    frames.append(renderer_inputs.to_float_image(template.frames[i], size))
  return explicit_memory.build_explicit_memory(np.stack(verts), np.stack(frames), np.asarray(boxes),
                                               int(c.memory_size), patch)


def _scaled_camera(template: Template, index: int, size: int) -> dict[str, Any]:
  cam = template.camera(index)
  frame_size = template.frames.shape[1]
  if cam["focal"] is not None and frame_size != size:
    s = size / frame_size
    cam["focal"] *= s
    if cam["principal"] is not None:
      cam["principal"] = tuple((np.asarray(cam["principal"]) + 0.5) * s - 0.5)
  return cam


# --------------------------------------------------------------------------------------------------
# The whole thing.


@dataclasses.dataclass(frozen=True)
class SpeakOptions:
  batch_size: int = 8
  composite: bool = True  # paste only the masked lower face into the template frame
  progress: bool = True
  a2e_step: int | None = None
  renderer_step: int | None = None
  syncnet_weights: str | None = None  # syncnet_v2.model (or its .npz): Sync-C / Sync-D of the output


def speak(a2e_workdir, renderer_workdir, audio_path, template_path, output_path,
          memory_path=None, features_path=None, face_model=None,
          options: SpeakOptions = SpeakOptions()) -> dict[str, Any]:
  """Writes the talking-head mp4 (module docstring); returns a summary."""
  output_path = pathlib.Path(output_path)
  if output_path.suffix.lower() != ".mp4":
    raise SpeakInputError(f"--output must be an .mp4 (it carries the audio), got {output_path}")
  for flag, path in (("--audio", audio_path), ("--memory", memory_path), ("--audio_features", features_path)):
    if path:  # Every input before the (slow) model loading.
      existing_file(path, flag)
  if not pathlib.Path(template_path).exists():
    raise SpeakInputError(f"--template={template_path} does not exist; give the speaker's prepared folder "
                          "(prepare_speaker's --out)")
  stage1 = load_stage1(a2e_workdir, options.a2e_step)
  stage2 = load_stage2(renderer_workdir, options.renderer_step)
  template = load_template(template_path, face_model)
  wave = read_audio(audio_path)
  num_frames = audio_lib.num_video_frames(len(wave), SAMPLE_RATE)
  mouth = predict_mouth(stage1, audio_windows(stage1, wave, num_frames, features_path))
  order = ping_pong(num_frames, len(template))
  if num_frames > len(template):
    logging.warning("the template has %d frames for %d output frames: it is played back and forth",
                    len(template), num_frames)
  exp = template.exp[order].copy()
  exp[:, stage1.exp_index] = mouth
  c = stage2.config.model
  size = stage2.image_size
  memory, memory_source = speaker_memory(stage2, template, memory_path)

  render = jax.jit(lambda v, r, m, q, mem: stage2.model.apply(v, r, m, q, mem))
  frames = []
  batch = max(1, int(options.batch_size))
  with tqdm.tqdm(total=num_frames, unit="frame", desc="rendering", disable=not options.progress) as bar:
    for start in range(0, num_frames, batch):
      chunk = range(start, min(start + batch, num_frames))
      examples = [renderer_inputs.renderer_example(
          template.frames[order[t]], template.face_model, exp[t], template.id, template.pose[order[t]],
          size, patch=int(c.patch_size), **template.camera(int(order[t]))) for t in chunk]
      stacked = {k: np.stack([e[k] for e in examples]) for k in ("rendered", "masked", "mask", "target",
                                                                   "mouth_vertices")}
      pad = batch - len(examples)
      inputs = [np.concatenate([stacked[k], np.repeat(stacked[k][-1:], pad, 0)]) if pad else stacked[k]
                for k in ("rendered", "masked", "mouth_vertices")]
      inputs[2] = inputs[2].reshape(batch, -1)
      pred = np.asarray(render(stage2.variables, *map(jnp.asarray, inputs), memory))[:len(examples)]
      if options.composite:
        pred = stacked["mask"] * pred + (1.0 - stacked["mask"]) * stacked["target"]
      frames.append((np.clip(pred, 0, 1) * 255 + 0.5).astype(np.uint8))
      bar.update(len(examples))
  video_io.write_video(output_path, np.concatenate(frames), FPS, audio_path=audio_path)
  summary = {"output": str(output_path), "frames": num_frames, "fps": FPS, "size": size,
             "seconds": round(len(wave) / SAMPLE_RATE, 3), "template_frames": len(template),
             "template_looped": num_frames > len(template), "memory": memory_source,
             "a2e": {"workdir": str(a2e_workdir), "step": stage1.step},
             "renderer": {"workdir": str(renderer_workdir), "step": stage2.step}}
  from talkingmem.metrics import sync  # pylint: disable=g-import-not-at-top
  summary["sync"] = sync.sync_metrics(np.concatenate(frames), wave, options.syncnet_weights, SAMPLE_RATE)
  return summary
