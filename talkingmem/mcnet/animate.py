"""Animates a source face image by a driving video (the FOMM/MCNet demo), from either checkpoint kind.

  python -m talkingmem.main --mode=animate --workdir=W --source img.png --driving video.mp4 --output out.mp4
  python -m talkingmem.main --mode=animate --checkpoint=vox.pth.tar --source img.png --driving video.mp4 \
      --output out.mp4 --relative --adapt_scale --find_best_frame --side_by_side

Steps: the source and every driving frame are cropped around the face with dlib (square, with margin;
the driving crop follows the face, smoothed over time, as FOMM's crop-video tool; `data_pipelines/
face_tracking.py`) or, with --no_crop, centre-cropped to a square; both are resized to the model size.
Motion is absolute or relative to a reference driving frame (optionally scaled by the keypoint hull area,
FOMM's adapt_movement_scale). The reference is frame 0, a given frame, or the frame whose normalised
dlib landmarks are closest to the source's (FOMM's --find_best_frame). The result has the driving
video's frame count and fps and, for .mp4, its audio.

Also here, because the evaluation and the memory pictures share them: `load_model` (our Orbax workdir or
the official `.pth.tar`) and the batched, jitted `animate_frames`.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Iterator, Sequence

from absl import logging
import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax.traverse_util import flatten_dict
import tqdm

from data_pipelines import face_tracking, video_io
from data_pipelines.user_errors import UserInputError, check_output, existing_file
from talkingmem.mcnet import paste_back
from talkingmem.mcnet.model import MCNet
from talkingmem.mcnet.normalize import normalize_kp

MODULES = ("kp_detector", "generator")
DEFAULT_FPS = 25.0


class AnimationInputError(UserInputError):
  """An input the animation cannot use; the message names the input and why."""


class NoFaceError(AnimationInputError):
  """dlib found no face where one is needed."""


class CheckpointMismatch(UserInputError):
  """Checkpoint variables that do not fit the model its config describes."""


# ---------------------------------------------------------------------------------------------------
# Loading a model.


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A model with its variables and where they came from."""
  model: MCNet
  variables: dict
  model_config: ml_collections.ConfigDict
  config: ml_collections.ConfigDict | None  # the training run's whole config (workdirs only)
  step: int | None
  origin: str  # 'workdir', 'official' or 'variables'
  path: str | None

  @property
  def image_size(self) -> int:
    return int(self.model_config.image_size)

  def describe(self) -> dict[str, Any]:
    return {"origin": self.origin, "path": self.path, "step": self.step}


def _template(model: MCNet, config: ml_collections.ConfigDict) -> dict:
  dummy = jnp.zeros((1, config.image_size, config.image_size, config.num_channels), jnp.float32)
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), dummy, dummy))


def model_variables(variables: dict) -> dict:
  """Only the keypoint detector and generator of every collection (drops e.g. a GAN discriminator)."""
  return {col: {m: v for m, v in tree.items() if m in MODULES} for col, tree in variables.items()
          if isinstance(tree, dict) and any(m in MODULES for m in tree)}


def check_variables(model: MCNet, config: ml_collections.ConfigDict, variables: dict, where: str) -> dict:
  """`variables` restricted to the model's modules; raises CheckpointMismatch naming what differs."""
  variables = model_variables(variables)
  want = {k: tuple(v.shape) for k, v in flatten_dict(_template(model, config)).items()}
  have = {k: tuple(np.shape(v)) for k, v in flatten_dict(variables).items()}
  missing = sorted("/".join(k) for k in want.keys() - have.keys())
  unexpected = sorted("/".join(k) for k in have.keys() - want.keys())
  shapes = sorted(f"{'/'.join(k)} {have[k]} vs {want[k]}" for k in want.keys() & have.keys()
                  if have[k] != want[k])
  if missing or unexpected or shapes:
    lines = [f"checkpoint/config mismatch: the variables of {where} do not fit the model its config "
             "describes (was config.json edited, or the checkpoint copied from another run?)"]
    for title, items in (("missing", missing), ("unexpected", unexpected),
                         ("shape (checkpoint vs model)", shapes)):
      if items:
        more = " ..." if len(items) > 8 else ""
        lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:8]) + more)
    raise CheckpointMismatch("\n".join(lines))
  return jax.tree.map(jnp.asarray, variables)


def load_model(workdir: str | pathlib.Path | None = None, checkpoint: str | pathlib.Path | None = None,
               step: int | None = None) -> LoadedModel:
  """Our Orbax checkpoint of a training `workdir` (latest or `step`), or an official MCNet `checkpoint`.

  The official file's model config is read from its tensor shapes (`official.infer_config`); the
  checkpoint wins when both are given, since a workdir then only supplies data settings.
  """
  if checkpoint:
    from talkingmem.mcnet import official  # pylint: disable=g-import-not-at-top
    from talkingmem.torch_io import TorchFileError  # pylint: disable=g-import-not-at-top
    path = pathlib.Path(checkpoint)
    try:
      state_dicts = official.load_state_dicts(path)
      config = official.infer_config(state_dicts)
      model = MCNet(config)
      variables = official.from_official(state_dicts, config, _template(model, config))
    except (official.StateDictMismatch, TorchFileError) as e:  # not MCNet's, or not a checkpoint
      raise CheckpointMismatch(str(e) if str(path) in str(e) else f"{path}: {e}") from e
    return LoadedModel(model, jax.tree.map(jnp.asarray, variables), config, None, None, "official",
                       str(path))
  if not workdir:
    raise UserInputError("no model given: pass a training --workdir (our checkpoints) or an official "
                         "--checkpoint=vox.pth.tar")
  from talkingmem import checkpointing  # pylint: disable=g-import-not-at-top  (pulls in Orbax)
  variables, config, step = checkpointing.load_variables(workdir, step)
  model = MCNet(config.model)
  variables = check_variables(model, config.model, variables, f"{workdir} step {step}")
  return LoadedModel(model, variables, config.model, config, int(step), "workdir", str(workdir))


def from_variables(model_config: ml_collections.ConfigDict, variables: dict) -> LoadedModel:
  """A LoadedModel from variables in memory (tests, notebooks)."""
  model = MCNet(model_config)
  return LoadedModel(model, check_variables(model, model_config, variables, "the given variables"),
                     model_config, None, None, "variables", None)


def random_variables(model_config: ml_collections.ConfigDict, seed: int = 0) -> dict:
  """Random variables of the model's shapes without running (or compiling) its initialisers.

  For smoke tests of the pipelines, where compiling `init` would cost more than everything else.
  Norm scales and running variances are 1, biases and running means 0, other weights N(0, 1/fan_in);
  the Jacobian head is the identity, as the model's own initialiser makes it (relative motion
  inverts Jacobians).
  """
  rng = np.random.default_rng(seed)

  def leaf(path, x) -> np.ndarray:
    names = [getattr(p, "key", str(p)) for p in path]
    shape, name = tuple(x.shape), names[-1]
    if "jacobian" in names[:-1]:
      if name == "bias":
        return np.tile(np.array([1, 0, 0, 1], np.float32), shape[0] // 4)
      return np.zeros(shape, np.float32)
    if name in ("scale", "var"):
      return np.ones(shape, np.float32)
    if name in ("bias", "mean"):
      return np.zeros(shape, np.float32)
    fan_in = int(np.prod(shape[:-1])) or 1
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

  model = MCNet(model_config)
  return jax.tree_util.tree_map_with_path(leaf, _template(model, model_config))


# ---------------------------------------------------------------------------------------------------
# Reading and framing the inputs.


def to_float_rgb(image: np.ndarray) -> np.ndarray:
  """(H, W, 3) float32 in [0, 1] from gray, gray+alpha, RGB or RGBA; uint8, uint16, bool or float.

  16-bit images keep their precision; alpha is composited over white, because the colour of fully
  transparent pixels is arbitrary (often black).
  """
  x = np.asarray(image)
  if x.dtype == np.uint16:
    x = x.astype(np.float32) / 65535.0
  elif x.dtype == np.bool_:
    x = x.astype(np.float32)
  elif np.issubdtype(x.dtype, np.integer):  # uint8, or PIL's int32 for 16-bit files
    x = x.astype(np.float32) / (65535.0 if x.max(initial=0) > 255 else 255.0)
  else:
    x = np.clip(x.astype(np.float32), 0.0, 1.0)
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim != 3 or x.shape[-1] not in (1, 2, 3, 4):
    raise AnimationInputError(f"expected a gray, gray+alpha, RGB or RGBA image, got shape {image.shape}")
  if x.shape[-1] in (2, 4):
    alpha = x[..., -1:]
    x = x[..., :-1] * alpha + (1.0 - alpha)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return np.ascontiguousarray(x, np.float32)


def check_decodes(path: pathlib.Path) -> None:
  """Refuses a file PIL recognises but cannot decode whole (a truncated JPEG, which OpenCV would fill
  with libjpeg's grey); formats PIL does not know are left to OpenCV."""
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as pil:
      pil.load()
  except UnidentifiedImageError:
    return
  except (OSError, SyntaxError, ValueError) as e:
    raise AnimationInputError(f"source image {path} is damaged ({e}); give an intact image file") from e


def read_image(path: str | pathlib.Path) -> np.ndarray:
  """An image file as (H, W, 3) float32 RGB in [0, 1] (see `to_float_rgb`); damaged files and
  non-finite (NaN/Inf) pixels are refused."""
  path = existing_file(path, "--source")
  check_decodes(path)
  img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
  if img is not None and not np.isfinite(img).all():
    raise AnimationInputError(f"source image {path} has NaN or infinite pixel values; save it with finite "
                              "values (e.g. as an 8-bit PNG)")
  if img is not None:
    if img.ndim == 3 and img.shape[-1] == 3:
      img = img[..., ::-1]
    elif img.ndim == 3 and img.shape[-1] == 4:
      img = img[..., [2, 1, 0, 3]]
    return to_float_rgb(img)
  try:  # formats OpenCV does not read (e.g. a GIF): PIL.
    from PIL import Image  # pylint: disable=g-import-not-at-top
    with Image.open(path) as pil:
      pil = pil.convert("RGBA") if pil.mode in ("P", "PA", "LA") else pil
      return to_float_rgb(np.asarray(pil))
  except OSError as e:
    raise AnimationInputError(f"source image {path} is unreadable: {e}") from e


def to_uint8(image: np.ndarray) -> np.ndarray:
  return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
  """The largest centred square of `image`, resized to (size, size): --no_crop never distorts faces."""
  h, w = image.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  square = image[top:top + side, left:left + side]
  if side == size:
    return np.ascontiguousarray(square)
  return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)


def track_config(size: int, **overrides: Any) -> face_tracking.TrackConfig:
  """FOMM-like framing: a crop 1.8x dlib's (tight) face box, moved up to keep the forehead."""
  return face_tracking.TrackConfig(size=size, **overrides)


def choose_face(boxes: np.ndarray, face_index: int | None, name: str) -> np.ndarray:
  """The box of face `face_index` (faces counted left to right from 0), or the largest; says which."""
  if not len(boxes):
    raise NoFaceError(f"no face found in {name}; pass --no_crop to use the whole image")
  if face_index is not None and not 0 <= face_index < len(boxes):
    raise AnimationInputError(f"--face_index={face_index}, but {name} has {len(boxes)} face(s) "
                              f"(0 to {len(boxes) - 1}, left to right)")
  chosen = face_tracking.largest_face(boxes) if face_index is None else face_index
  if len(boxes) > 1:
    logging.warning("%s has %d faces; animating face %d (left to right from 0%s); choose another with "
                    "--face_index", name, len(boxes), chosen, ", the largest" if face_index is None else "")
  return boxes[chosen]


def source_crop_box(image: np.ndarray, size: int, config: face_tracking.TrackConfig | None = None,
                    name: str = "the source image", face_index: int | None = None) -> np.ndarray:
  """The square face crop box (left, top, right, bottom) of the source photo, in its pixels."""
  config = config or track_config(size)
  box = choose_face(face_tracking.detect_faces(to_uint8(image), config), face_index, name)
  return face_tracking.plan_track(box[None], config).crop_boxes[0]


def prepare_source(image: np.ndarray, size: int, crop: bool = True,
                   config: face_tracking.TrackConfig | None = None, name: str = "the source image",
                   face_index: int | None = None) -> np.ndarray:
  """The model-size (size, size, 3) float source: a face crop (the largest face, or face `face_index`
  left to right), or a centred square with crop=False."""
  if not crop:
    return square_resize(image, size)
  return face_tracking.crop_frame(image, source_crop_box(image, size, config, name, face_index), size)


@dataclasses.dataclass(frozen=True)
class Driving:
  """Model-size driving frames (uint8, to keep long videos small) and what the output needs."""
  frames: np.ndarray  # (T, size, size, 3) uint8
  fps: float
  has_audio: bool
  face_frames: dict[str, int] | None  # detected / interpolated / held frames when cropping


def _frames(path: pathlib.Path) -> Iterator[np.ndarray]:
  """Streams a container file (decoded twice when cropping, never held whole); reads others at once."""
  if path.is_file() and path.suffix.lower() in video_io.VIDEO_EXTENSIONS:
    yield from video_io.iter_video_file_frames(path)
  else:
    yield from video_io.read_video(path)


def _fill_missing(crop_boxes: np.ndarray) -> np.ndarray:
  """Frames the tracker cut (no face nearby) keep the crop of the nearest tracked frame."""
  tracked = np.flatnonzero(~np.isnan(crop_boxes[:, 0]))
  t = np.arange(len(crop_boxes))
  after = np.clip(np.searchsorted(tracked, t), 0, len(tracked) - 1)
  before = np.clip(after - 1, 0, len(tracked) - 1)
  closer_before = np.abs(tracked[before] - t) <= np.abs(tracked[after] - t)
  nearest = np.where(closer_before, tracked[before], tracked[after])
  return crop_boxes[nearest]


def read_driving(path: str | pathlib.Path, size: int, crop: bool = True,
                 config: face_tracking.TrackConfig | None = None, progress: bool = False) -> Driving:
  """The driving video at the model size, face-tracked (crop=True) or centre-squared."""
  path = pathlib.Path(path)
  try:
    info = video_io.video_info(path)
    if crop:
      config = config or track_config(size)
      with tqdm.tqdm(total=info["frames"], unit="frame", desc="detecting faces", disable=not progress) as bar:
        boxes = face_tracking.detect_boxes(_frames(path), config, progress=bar)
      plan = face_tracking.plan_track(boxes, config)
      if not plan.keep.any():
        raise NoFaceError(f"no face found in the driving video {path} (in none of its {len(boxes)} frames); "
                          "pass --no_crop to use whole frames")
      crop_boxes = _fill_missing(plan.crop_boxes)
      counts = plan.counts()
      counts["held"] = counts.pop("no_face")
      frames = [face_tracking.crop_frame(f, crop_boxes[t], size)
                for t, f in enumerate(_frames(path)) if t < len(crop_boxes)]
    else:
      counts = None
      frames = [square_resize(f, size) for f in _frames(path)]
  except video_io.VideoReadError as e:
    raise AnimationInputError(f"cannot read the driving video: {e}") from e
  if not frames:
    raise AnimationInputError(f"cannot read the driving video: {path} has no decodable frames")
  return Driving(np.stack(frames), float(info["fps"] or DEFAULT_FPS), bool(info["has_audio"]), counts)


# ---------------------------------------------------------------------------------------------------
# Best reference frame.


def normalized_landmarks(points: np.ndarray) -> np.ndarray:
  """Landmarks centred and divided by sqrt(convex hull area): comparable across position and scale."""
  points = np.asarray(points, np.float64)
  centred = points - points.mean(axis=0)
  area = cv2.contourArea(cv2.convexHull(points.astype(np.float32)))
  return centred / np.sqrt(max(area, 1e-12))


def best_frame_index(source_landmarks: np.ndarray, driving_landmarks: Sequence[np.ndarray | None]) -> int:
  """The driving frame whose normalised landmarks are closest (sum of squares) to the source's.

  Frames without landmarks (no face) are never chosen; raises NoFaceError if no frame has any.
  """
  src = normalized_landmarks(source_landmarks)
  dist = [np.inf if lm is None else float(np.sum((normalized_landmarks(lm) - src) ** 2))
          for lm in driving_landmarks]
  if not dist or not np.isfinite(dist).any():
    raise NoFaceError("no face found in any driving frame, so there is no best frame to pick")
  return int(np.argmin(dist))


def face_landmarks(frames: np.ndarray, config: face_tracking.TrackConfig | None = None,
                   progress: bool = False) -> list[np.ndarray | None]:
  """dlib's 68 landmarks of square (N, S, S, 3) uint8 frames, None where no face is found."""
  config = config or track_config(frames.shape[1])
  path = face_tracking.landmark_model_path()
  out = []
  for frame in tqdm.tqdm(frames, unit="frame", desc="landmarks", disable=not progress):
    box = face_tracking.detect_face(frame, config)
    found = box is not None
    out.append(face_tracking.predict_landmarks(frame, box, config.landmark_side, path) if found else None)
  return out


# ---------------------------------------------------------------------------------------------------
# Generation.


def _keep(kp: dict) -> dict:
  return {k: v for k, v in kp.items() if k in ("value", "jacobian")}


def as_float(frames: np.ndarray) -> np.ndarray:
  """Frames as float32 in [0, 1] (uint8 frames are divided by 255)."""
  frames = np.asarray(frames)
  return frames.astype(np.float32) / 255.0 if frames.dtype == np.uint8 else frames.astype(np.float32)


def keypoint_detector(model: MCNet):
  """jit((variables, frames (N, H, W, 3) float) -> keypoints {'value', 'jacobian'})."""
  return jax.jit(lambda v, x: _keep(model.apply(v, x, method=MCNet.detect)))


def animation_step(model: MCNet, relative: bool, adapt_scale: bool):
  """jit((variables, source, kp_source, kp_initial, frames (N, H, W, 3)) -> predictions (N, H, W, 3)).

  The motion of each driving frame, absolute or relative to `kp_initial`, applied to the source.
  """

  @jax.jit
  def step(variables, source, kp_source, kp_initial, frames):
    # Everything is an argument: closed-over arrays would be constant-folded by XLA at compile time.
    kp_driving = _keep(model.apply(variables, frames, method=MCNet.detect))
    n = frames.shape[0]
    tile = lambda kp: {k: jnp.repeat(v, n, axis=0) for k, v in kp.items()}  # noqa: E731
    kp_norm = normalize_kp(tile(kp_source), kp_driving, tile(kp_initial), adapt_movement_scale=adapt_scale,
                           use_relative_movement=relative, use_relative_jacobian=relative)
    src = jnp.broadcast_to(source[None], frames.shape)
    return model.apply(variables, src, tile(kp_source), _keep(kp_norm), method=MCNet.generate)["prediction"]

  return step


def animate_frames(model: MCNet, variables, source: np.ndarray, driving: np.ndarray,
                   batch_size: int = 16, relative: bool = True, adapt_scale: bool = True,
                   initial_index: int = 0, progress: bool = False) -> np.ndarray:
  """Animates one source image (H, W, 3) by driving frames (T, H, W, 3) -> (T, H, W, 3) float32.

  Frames are floats in [0, 1] or uint8. Relative motion is measured from driving frame
  `initial_index`. FOMM generates forward and backward from its best frame; each frame here depends
  only on itself and that reference frame, so one pass in order gives the same frames. Batches are
  padded to `batch_size`, so the step compiles once.
  """
  detect = keypoint_detector(model)
  source = jnp.asarray(as_float(source))
  kp_source = detect(variables, source[None])
  kp_initial = detect(variables, jnp.asarray(as_float(driving[initial_index:initial_index + 1])))
  step = animation_step(model, relative, adapt_scale)
  batch_size = max(1, min(batch_size, len(driving)))
  out = []
  with tqdm.tqdm(total=len(driving), unit="frame", desc="animating", disable=not progress) as bar:
    for start in range(0, len(driving), batch_size):
      chunk = as_float(driving[start:start + batch_size])
      pad = batch_size - len(chunk)
      padded = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)]) if pad else chunk
      pred = step(variables, source, kp_source, kp_initial, jnp.asarray(padded))
      out.append(np.asarray(pred)[:len(chunk)])
      bar.update(len(chunk))
  return np.concatenate(out)


OUTPUT_SUFFIXES = (".mp4", ".gif", "")  # "" is a folder of PNG frames


@dataclasses.dataclass(frozen=True)
class AnimateOptions:
  """How to animate; see the module docstring."""
  crop: bool = True
  relative: bool = True
  adapt_scale: bool = False
  best_frame: int | None = None  # reference driving frame for relative motion
  find_best_frame: bool = False  # pick the reference by landmarks (needs a face in the source)
  side_by_side: bool = False  # source | driving | result
  batch_size: int = 16
  face_index: int | None = None  # which source face, left to right (None: the largest)
  progress: bool = True
  paste_back: bool = True  # with crop: the animated face warped back into the full photo
  max_size: int | None = 1024  # longest side of the pasted-back output (None: the photo's)


def check_animation_args(source_path: str | pathlib.Path, driving_path: str | pathlib.Path,
                         output_path: str | pathlib.Path, options: AnimateOptions,
                         other_inputs: Sequence[str | pathlib.Path | None] = ()) -> None:
  """Every argument checked before any work (or model loading): the inputs exist, the options fit, and
  the output is a new .mp4/.gif/folder path, not an input or a non-empty folder, in a writable place."""
  existing_file(source_path, "--source")
  if not pathlib.Path(driving_path).exists():
    raise AnimationInputError(f"--driving={driving_path} does not exist; give a video file, gif or frames "
                              "folder")
  if options.best_frame is not None and options.find_best_frame:
    raise AnimationInputError("give --best_frame or --find_best_frame, not both")
  for flag, value in (("--best_frame", options.best_frame), ("--face_index", options.face_index)):
    if value is not None and value < 0:
      raise AnimationInputError(f"{flag}={value} must be >= 0")
  if options.batch_size < 1:
    raise AnimationInputError(f"--batch_size={options.batch_size} must be >= 1")
  check_output(output_path, "--output", (source_path, driving_path, *other_inputs), OUTPUT_SUFFIXES,
               folder_ok=True)


def animate(loaded: LoadedModel, source_path: str | pathlib.Path, driving_path: str | pathlib.Path,
            output_path: str | pathlib.Path, options: AnimateOptions = AnimateOptions()) -> dict[str, Any]:
  """Writes the animation to `output_path` (.mp4 with the driving audio, .gif, or a frames folder)."""
  check_animation_args(source_path, driving_path, output_path, options)
  size = loaded.image_size
  photo = read_image(source_path)
  name = f"the source image {source_path}"
  crop_box = source_crop_box(photo, size, name=name, face_index=options.face_index) if options.crop else None
  source = face_tracking.crop_frame(photo, crop_box, size) if options.crop else square_resize(photo, size)
  driving = read_driving(driving_path, size, options.crop, progress=options.progress)
  num = len(driving.frames)
  reference = options.best_frame or 0
  if options.find_best_frame:
    src_lm = face_landmarks(to_uint8(source)[None])[0]
    if src_lm is None:
      raise NoFaceError(f"no face found in the source image {source_path} (needed by --find_best_frame)")
    reference = best_frame_index(src_lm, face_landmarks(driving.frames, progress=options.progress))
  if not 0 <= reference < num:
    raise AnimationInputError(f"--best_frame {reference} is outside the driving video's {num} frames")
  pred = animate_frames(loaded.model, loaded.variables, source, driving.frames, options.batch_size,
                        options.relative, options.adapt_scale, reference, options.progress)
  pasted = options.paste_back and crop_box is not None
  if pasted:
    frames = np.stack([to_uint8(f) for f in paste_back.iter_pasted(photo, crop_box, pred, options.max_size)])
    shown_source, shown_driving = paste_back.side_by_side_inputs(photo, driving.frames, frames.shape[1:3])
  else:
    frames = to_uint8(pred)
    shown_source, shown_driving = to_uint8(source), driving.frames
  if options.side_by_side:
    frames = np.concatenate([np.broadcast_to(shown_source, frames.shape), shown_driving, frames], axis=2)
  output_path = pathlib.Path(output_path)
  audio = driving.has_audio and output_path.suffix.lower() == ".mp4"
  if driving.has_audio and not audio:
    logging.warning("the driving video's audio is dropped: only .mp4 outputs carry audio")
  # write_video pads or cuts the audio to the video's length.
  video_io.write_video(output_path, frames, driving.fps, audio_path=driving_path if audio else None)
  return {"output": str(output_path), "frames": num, "fps": driving.fps, "size": size,
          "reference_frame": reference, "audio": audio, "relative": options.relative,
          "adapt_scale": options.adapt_scale, "crop": options.crop, "driving_faces": driving.face_frames,
          "paste_back": pasted, "output_size": list(frames.shape[1:3]),
          "checkpoint": loaded.describe(),
          "source_face": "largest" if options.face_index is None else options.face_index}
