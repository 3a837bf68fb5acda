"""Generates the synthetic talking-face dataset (MCNet / FOMM training) in the FOMM on-disk layout.

  out_dir/face_model.npz, out_dir/dataset_info.json
  out_dir/{train,test}/<identity>#<clip>.mp4        (or a folder of 0000000.png)
  out_dir/{train,test}/<identity>#<clip>.npz        per-frame ground truth

Metadata keys: pose (T,6) [yaw, pitch, roll, tx, ty, scale] (see renderer),
id_coeffs (n_id,), exp_coeffs (T,n_exp), exp_names (n_exp,), mouth_vertices
(T,M,3) model space, landmarks (T,68,2) pixels (x, y) at the stored size,
gaze (T,2), occlusion (T,) fraction of the head hidden by occluders, fps ().

Test identities are held out (no clip of theirs is in train). Every clip's
randomness comes from (seed, identity, clip) alone, so the output does not
depend on the number of workers.

  python -m data_pipelines.synthetic.video_set --out DIR --size 64 --num_identities 200
"""

import json
import multiprocessing
import os
import pathlib
import time

import cv2
import numpy as np

from data_pipelines.user_errors import run_cli
from data_pipelines import video_io
from data_pipelines.synthetic.engine import appearance as appearance_lib
from data_pipelines.synthetic.engine import face_model as face_model_lib
from data_pipelines.synthetic.engine import motion as motion_lib
from data_pipelines.synthetic.engine import occluders as occluders_lib
from data_pipelines.synthetic.engine import renderer as renderer_lib
from data_pipelines.synthetic import generator_cli
from data_pipelines.synthetic.engine import scene as scene_lib

VIDEO_FORMATS = ("mp4", "png", "gif", "mix")
_SPLIT_KEY = 1 << 30  # spawn_key namespaces, so streams never collide.
_IDENTITY_KEY = 0
_CLIP_KEY = 1


def identity_name(index: int) -> str:
  return f"id{index:05d}"


def clip_name(identity_index: int, clip_index: int) -> str:
  return f"{identity_name(identity_index)}#{clip_index:03d}"


def keyed_rng(seed: int, *key: int) -> np.random.Generator:
  """The random stream of (seed, key): independent of every other key's."""
  return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def pool_size(workers: int | None, num_tasks: int) -> int:
  """Worker processes for `num_tasks` tasks: `workers` (default: all CPUs), at most one per task."""
  return max(1, min(workers or os.cpu_count() or 1, num_tasks or 1))


def sample_identity(model: face_model_lib.FaceModel, seed: int,
                    identity_index: int) -> renderer_lib.Identity:
  """The identity's shape and appearance: a function of (seed, index) only."""
  rng = keyed_rng(seed, identity_index, _IDENTITY_KEY)
  coeffs = np.clip(rng.standard_normal(model.n_id), -2.5, 2.5).astype(np.float32)
  return renderer_lib.Identity(coeffs, appearance_lib.sample_appearance(rng))


def split_identities(num_identities: int, test_fraction: float, seed: int) -> np.ndarray:
  """(num_identities,) bool, True for held-out test identities."""
  n_test = int(round(num_identities * test_fraction))
  if test_fraction > 0 and num_identities >= 2:
    n_test = min(max(n_test, 1), num_identities - 1)
  order = keyed_rng(seed, _SPLIT_KEY).permutation(num_identities)
  is_test = np.zeros(num_identities, bool)
  is_test[order[:n_test]] = True
  return is_test


def render_clip(model: face_model_lib.FaceModel, identity: renderer_lib.Identity,
                scene: scene_lib.Scene, motion: motion_lib.ClipMotion, size: int
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Renders a clip: (T, size, size, 3) uint8 frames and per-frame arrays."""
  renderer = renderer_lib.FaceRenderer(model, identity, scene, size)
  frames, landmarks, mouth, occlusion, surface, visible = [], [], [], [], [], []
  for f in range(len(motion.pose)):
    occ = [occluders_lib.Occluder(tr.kind, *(float(v) for v in tr.track[f]), tr.colour)
           for tr in motion.occluders if tr.visible[f]]
    out = renderer.render(motion.pose[f], motion.exp_coeffs[f], motion.gaze[f], occ)
    frames.append(out.image)
    landmarks.append(out.landmarks)
    mouth.append(out.mouth_vertices)
    occlusion.append(out.occlusion)
    surface.append(out.surface)
    visible.append(out.visible_triangles)
  arrays = dict(landmarks=np.stack(landmarks), mouth_vertices=np.stack(mouth),
                occlusion=np.asarray(occlusion, np.float32), surface=np.stack(surface),
                visible_triangles=np.stack(visible))
  return np.stack(frames), arrays


def _clip_format(video_format: str, identity_index: int, clip_index: int) -> str:
  if video_format == "mix":
    return ("mp4", "png")[(identity_index + clip_index) % 2]
  return video_format


def generate_clip(model: face_model_lib.FaceModel, *, seed: int, identity_index: int,
                  clip_index: int, frames_per_clip: int, size: int, fps: float,
                  head_motion: float = 1.0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Frames and metadata of one clip, a pure function of its arguments."""
  identity = sample_identity(model, seed, identity_index)
  rng = keyed_rng(seed, identity_index, _CLIP_KEY, clip_index)
  scene = scene_lib.sample_scene(rng)
  motion = motion_lib.sample_clip_motion(rng, frames_per_clip, model.exp_names, fps,
                                         skin=identity.appearance.skin, head_motion=head_motion)
  frames, arrays = render_clip(model, identity, scene, motion, size)
  meta = dict(
      pose=motion.pose.astype(np.float32), id_coeffs=identity.id_coeffs.astype(np.float32),
      exp_coeffs=motion.exp_coeffs.astype(np.float32), exp_names=np.array(model.exp_names),
      mouth_vertices=arrays["mouth_vertices"], landmarks=arrays["landmarks"],
      gaze=motion.gaze.astype(np.float32), occlusion=arrays["occlusion"], surface=arrays["surface"],
      visible_triangles=arrays["visible_triangles"],
      fps=np.float32(fps))
  return frames, meta


# ---------------------------------------------------------------------------
# Workers.

_WORKER_MODEL = None


def _init_worker(model_path: str, single_threaded: bool = True) -> None:
  global _WORKER_MODEL
  if single_threaded:  # The pool already uses every core.
    cv2.setNumThreads(1)
  _WORKER_MODEL = face_model_lib.FaceModel.load(model_path)


def _work(task: dict) -> tuple[str, int]:
  frames, meta = generate_clip(
      _WORKER_MODEL, seed=task["seed"], identity_index=task["identity"],
      clip_index=task["clip"], frames_per_clip=task["frames"], size=task["size"],
      fps=task["fps"], head_motion=task["head_motion"])
  base = pathlib.Path(task["dir"]) / clip_name(task["identity"], task["clip"])
  suffix = {"mp4": ".mp4", "gif": ".gif", "png": ""}[task["format"]]
  video_io.write_video(str(base) + suffix, frames, fps=task["fps"])
  np.savez(str(base) + ".npz", **meta)
  return task["split"], len(frames)


def generate_dataset(out_dir: str | os.PathLike, *, num_identities: int = 300,
                     clips_per_identity: int = 2, frames_per_clip: int = 32, size: int = 64,
                     seed: int = 0, test_fraction: float = 0.1, video_format: str = "mp4",
                     fps: float = motion_lib.FPS, head_motion: float = 1.0,
                     workers: int | None = None) -> dict:
  """Writes the dataset and returns the summary stored in dataset_info.json.

  Args:
    out_dir: output root (created).
    num_identities: number of synthetic people.
    clips_per_identity: videos per person.
    frames_per_clip: frames per video.
    size: frame height = width in pixels (even for mp4).
    seed: global seed.
    test_fraction: fraction of identities held out for the test split.
    video_format: "mp4" (H.264, lossy), "png" (lossless frame folders), "gif",
      or "mix" (mp4 and png alternating).
    fps: frame rate of motion and videos.
    head_motion: scales the head's movement within each clip (1: the default amplitudes).
    workers: processes (default: all CPUs); the output does not depend on it.
  """
  if video_format not in VIDEO_FORMATS:
    raise ValueError(f"video_format must be one of {VIDEO_FORMATS}, got {video_format!r}")
  if video_format in ("mp4", "mix") and size % 2:
    raise ValueError(f"mp4 (H.264 yuv420p) needs an even frame size, got {size}")
  start = time.perf_counter()
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  model = face_model_lib.build_face_model()
  model_path = out / "face_model.npz"
  model.save(model_path)
  is_test = split_identities(num_identities, test_fraction, seed)
  tasks = []
  for i in range(num_identities):
    split = "test" if is_test[i] else "train"
    (out / split).mkdir(exist_ok=True)
    for c in range(clips_per_identity):
      tasks.append(dict(seed=seed, identity=i, clip=c, frames=frames_per_clip, size=size,
                        fps=fps, head_motion=head_motion, split=split, dir=str(out / split),
                        format=_clip_format(video_format, i, c)))
  workers = pool_size(workers, len(tasks))
  if workers == 1:
    _init_worker(str(model_path), single_threaded=False)
    results = [_work(t) for t in tasks]
  else:
    # spawn: the parent may have imported JAX, which does not survive fork().
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, _init_worker, (str(model_path),)) as pool:
      results = list(pool.imap_unordered(_work, tasks, chunksize=1))
  seconds = time.perf_counter() - start
  num_frames = sum(n for _, n in results)
  info = dict(
      num_identities=num_identities,
      train_identities=int((~is_test).sum()), test_identities=int(is_test.sum()),
      clips_per_identity=clips_per_identity, frames_per_clip=frames_per_clip,
      num_videos={s: sum(1 for r, _ in results if r == s) for s in ("train", "test")},
      num_frames=num_frames, size=size, fps=fps, head_motion=head_motion, seed=seed,
      test_fraction=test_fraction,
      video_format=video_format, workers=workers,
      generation_seconds=round(seconds, 3),
      frames_per_second=round(num_frames / max(seconds, 1e-9), 2),
      face_model=dict(num_vertices=model.num_vertices, n_id=model.n_id, n_exp=model.n_exp,
                      exp_names=list(model.exp_names)),
      pose_convention="[yaw, pitch, roll] radians (yaw>0 faces image right, pitch>0 chin down, "
                      "roll>0 counter-clockwise), [tx, ty] image fractions (right, down), scale",
  )
  (out / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
  return info


CLI_OPTIONS = {
    "size": generator_cli.Option(int), "num_identities": generator_cli.Option(int),
    "clips_per_identity": generator_cli.Option(int), "frames_per_clip": generator_cli.Option(int),
    "seed": generator_cli.Option(int), "test_fraction": generator_cli.Option(float),
    "video_format": generator_cli.Option(VIDEO_FORMATS), "fps": generator_cli.Option(float),
    "head_motion": generator_cli.Option(float)}


def main(argv: list[str] | None = None) -> None:
  generator_cli.main(
      argv, module="data_pipelines.synthetic.video_set", function="generate_dataset",
      description=__doc__.split("\n")[0], options=CLI_OPTIONS,
      summary_keys=("num_identities", "train_identities", "test_identities", "num_videos",
                    "num_frames", "size", "video_format", "workers", "generation_seconds",
                    "frames_per_second"))


if __name__ == "__main__":
  run_cli(main)
