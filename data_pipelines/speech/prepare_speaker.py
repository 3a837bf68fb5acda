"""Prepares one speaker's talking video for MemFace training (person-specific data).

  python -m data_pipelines.speech.prepare_speaker --video talk.mp4 --out DIR \
      [--face_model model.npz] [--size 256] [--min_seconds 10]

Steps (each with a progress bar on stderr): check the input (audio stream,
length) -> extract 16 kHz mono audio -> decode at 25 fps and detect the face
in every frame (dlib) -> smooth the box, interpolate short gaps, cut long ones
-> crop + 68 landmarks -> fit the 3DMM (JAX, `face_fitting`) -> mouth masks,
audio features -> preview. Everything is written to a hidden sibling folder
and renamed to DIR at the end, so DIR is either complete or absent. Stdout
is one JSON line, the same as DIR/summary.json.

MemFace per-speaker layout (N kept frames, all per-frame arrays in the same
order; frame i is source frame `frame_index[i]` of the 25 fps timeline):

  DIR/frames/0000000.png ...    N RGB face crops, size x size
  DIR/audio.wav                 16 kHz mono PCM16, the whole audio track
                                (source timeline: frame t <-> [t/25, (t+1)/25) s)
  DIR/audio_mel.npy             (T_mel, 80) float32 log-mel of audio.wav, 50 Hz,
                                feature 2t is centred on source frame t
                                (data_pipelines.audio.log_mel_spectrogram)
  DIR/audio_features.npy        (N, W, D) float32 per-frame audio windows
                                (default: W=16 log-mel frames, D=80; or from
                                --audio_features, see load_audio_features)
  DIR/coeffs.npz                id (n_id,), exp (N, n_exp), exp_names (n_exp,),
                                pose (N, 6) [yaw, pitch, roll, tx, ty, tz] and
                                focal (), principal (2,), image_size (2,) (H, W):
                                one pinhole camera in SOURCE pixels (see
                                data_pipelines.speech.face_fitting); crop_focal (N,),
                                crop_principal (N, 2): the same camera in each
                                crop's pixels (project with these to draw on
                                frames/); residual_px (N,) crop pixels
  DIR/face_model.npz            the 3DMM the coefficients refer to
  DIR/mouth_vertices.npy        (N, M, 3) float32 model-space (pose-free) mouth
                                vertices (face_model.mouth_vertex_ids)
  DIR/landmarks.npy             (N, 68, 2) float32 dlib landmarks, crop pixels
  DIR/fit_landmarks.npy         (N, 68, 2) float32 projected fitted landmarks, crop px
  DIR/mouth_mask/0000000.png    N uint8 masks (255 = mouth region: hull of the
                                projected mouth vertices and lip landmarks, grown)
  DIR/mouth_boxes.npy           (N, 4) float32 [x0, y0, x1, y1] of the masks
  DIR/frame_index.npy           (N,) int64 source frame of each kept frame
  DIR/crop_boxes.npy            (N, 4) float32 [x0, y0, x1, y1] crop window in source
                                pixels: crop = (src - (x0, y0) + .5) * size / (x1 - x0) - .5
  DIR/split.json                {"train": [...], "val": [...]}: indices into the
                                N frames; val is the last N // 11 (>= 1)
  DIR/preview.mp4               crops with dlib landmarks | fitted mesh + fitted
                                landmarks, with the matching audio
  DIR/summary.json              counts (kept, dropped by reason), fit residual
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any

import cv2
import imageio_ffmpeg
import numpy as np
from scipy.io import wavfile
from tqdm import tqdm

from data_pipelines.speech import face_fitting
from data_pipelines import face_tracking
from data_pipelines import video_io
from data_pipelines.synthetic.engine import face_model as face_model_lib
from data_pipelines.user_errors import ArgumentParser, UserInputError, check_writable, run_cli
from data_pipelines import audio as audio_lib

FPS = 25  # MemFace's audio features are aligned 2:1 to 25 fps video.
SAMPLE_RATE = 16000
VAL_FRACTION_DENOMINATOR = 11  # Hold out the last 1/11 of the frames.
MIN_FRAMES = 2 * VAL_FRACTION_DENOMINATOR
MOUTH_MASK_GROW = 0.25  # Mask hull grown by this fraction around its centre.
MAX_PREVIEW_TRIANGLES = 8000


class PrepareError(UserInputError):
  """A refusal with a message naming the input and what to do about it."""


# ---------------------------------------------------------------------------
# Input checks and decoding.


def check_input(video: pathlib.Path, min_seconds: float) -> dict[str, Any]:
  """video_info of an acceptable input; PrepareError otherwise."""
  if not video.exists():
    raise PrepareError(f"{video}: no such file; pass --video with the path of the talking video.")
  if video.is_dir() or video.suffix.lower() not in video_io.VIDEO_EXTENSIONS:
    raise PrepareError(f'{video}: not a video file with sound (expected one of '
                       f'{", ".join(video_io.VIDEO_EXTENSIONS)}); MemFace needs video and speech '
                       'together.')
  try:
    info = video_io.video_info(video)
  except video_io.VideoReadError as e:
    raise PrepareError(f"{video}: cannot read it ({e.reason}); re-encode it, e.g. "
                       f"`ffmpeg -i {video.name} -c:v libx264 -c:a aac fixed.mp4`.") from e
  if not info["has_audio"]:
    raise PrepareError(
        f"{video}: no audio stream; MemFace learns from the speech, so the video must carry it. "
        f"Mux the audio in (e.g. `ffmpeg -i {video.name} -i speech.wav -map 0:v -map 1:a "
        "-c:v copy -c:a aac with_audio.mp4`) and pass that file.")
  if not info["fps"] or not info["frames"]:
    raise PrepareError(f"{video}: frame rate or frame count unknown; re-encode it with ffmpeg.")
  seconds = info["frames"] / info["fps"]
  if seconds < min_seconds:
    raise PrepareError(
        f"{video}: {seconds:.2f} s long, shorter than the minimum of {min_seconds:g} s; "
        "person-specific training needs more footage: pass a longer video "
        "(or lower --min_seconds, at the cost of quality).")
  return dict(info, seconds=seconds)


def iter_frames(video: pathlib.Path, fps: float = FPS) -> Iterator[np.ndarray]:
  """RGB uint8 frames resampled to `fps` by ffmpeg (frames dropped/duplicated)."""
  gen = imageio_ffmpeg.read_frames(str(video), pix_fmt="rgb24", output_params=["-vf", f"fps={fps}"])
  try:
    try:
      meta = next(gen)
    except (RuntimeError, OSError, StopIteration) as e:
      raise PrepareError(f"{video}: ffmpeg cannot decode it ({e}); re-encode it.") from e
    width, height = meta["size"]
    for buf in gen:
      yield np.frombuffer(buf, np.uint8).reshape(height, width, 3)
  finally:
    gen.close()


def read_wave(path: pathlib.Path) -> np.ndarray:
  rate, wave = wavfile.read(path)
  if rate != SAMPLE_RATE:
    raise PrepareError(f"{path}: expected {SAMPLE_RATE} Hz audio, got {rate}")
  if np.issubdtype(wave.dtype, np.integer):
    wave = wave / float(np.iinfo(wave.dtype).max + 1)
  wave = np.asarray(wave, np.float32)
  return wave.mean(-1) if wave.ndim == 2 else wave


# ---------------------------------------------------------------------------
# Drawing: mouth masks and the preview.


def _mouth_polygon(mouth_xy: np.ndarray, lip_landmarks: np.ndarray) -> np.ndarray:
  pts = np.concatenate([mouth_xy, lip_landmarks]).astype(np.float32)
  hull = cv2.convexHull(pts)[:, 0]
  centre = hull.mean(0)
  return centre + (hull - centre) * (1 + MOUTH_MASK_GROW)


def mouth_mask(mouth_xy: np.ndarray, lip_landmarks: np.ndarray, size: int
               ) -> tuple[np.ndarray, np.ndarray]:
  """(size, size) uint8 mask and its (4,) box from projected mouth vertices + lip landmarks."""
  poly = _mouth_polygon(mouth_xy, lip_landmarks)
  mask = np.zeros((size, size), np.uint8)
  cv2.fillConvexPoly(mask, np.round(poly * 16).astype(np.int32), 255, cv2.LINE_8, shift=4)
  box = np.concatenate([poly.min(0), poly.max(0)]).clip(0, size - 1)
  return mask, box.astype(np.float32)


def _front_edges(xy: np.ndarray, triangles: np.ndarray) -> np.ndarray:
  """(E, 2, 2) unique edges of the triangles facing the camera."""
  a, b, c = xy[triangles[:, 0]], xy[triangles[:, 1]], xy[triangles[:, 2]]
  cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
  tris = triangles[cross < 0]  # Outward CCW winding turns clockwise with y pointing down.
  if len(tris) > MAX_PREVIEW_TRIANGLES:
    tris = tris[np.linspace(0, len(tris) - 1, MAX_PREVIEW_TRIANGLES).astype(int)]
  edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), 1)
  edges = np.unique(edges, axis=0)
  return xy[edges]


def _fixed(points: np.ndarray, scale: float) -> np.ndarray:
  """Pixel coordinates -> cv2 fixed point (shift=4) at `scale`x the size."""
  return np.round(((np.asarray(points) + 0.5) * scale - 0.5) * 16).astype(np.int32)


def preview_frame(crop: np.ndarray, landmarks: np.ndarray, fit_landmarks: np.ndarray,
                  vertices_xy: np.ndarray, triangles: np.ndarray, side: int) -> np.ndarray:
  """[crop + dlib landmarks (green) | crop + fitted mesh (cyan) and landmarks (red)]."""
  scale = side / crop.shape[0]
  base = cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR)
  left, right = base.copy(), base.copy()
  radius = max(1, round(side / 200))
  for p in _fixed(landmarks, scale):
    cv2.circle(left, tuple(p), radius * 16, (0, 255, 0), -1, cv2.LINE_AA, shift=4)
  overlay = right.copy()
  cv2.polylines(overlay, list(_fixed(_front_edges(vertices_xy, triangles), scale)), False,
                (0, 220, 255), 1, cv2.LINE_AA, shift=4)
  right = cv2.addWeighted(overlay, 0.45, right, 0.55, 0)
  for p in _fixed(fit_landmarks, scale):
    cv2.circle(right, tuple(p), radius * 16, (255, 40, 40), -1, cv2.LINE_AA, shift=4)
  return np.concatenate([left, right], 1)


# ---------------------------------------------------------------------------
# The pipeline.


def _load_face_model(path: str | None) -> tuple[face_model_lib.FaceModel, str]:
  if path is None:
    return face_model_lib.build_face_model(), "builtin synthetic face model"
  try:
    return face_model_lib.FaceModel.load(path), str(path)
  except (OSError, ValueError) as e:
    raise PrepareError(
        f'{path}: not a usable face model ({e}); expected an .npz with '
        f'{", ".join(face_model_lib.SCHEMA_KEYS)} (see data_pipelines/synthetic/engine/face_model.py), '
        'or leave --face_model out to use the built-in model.') from e


def _audio_features(args: argparse.Namespace, wave: np.ndarray, num_frames: int
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
  """Log-mel (T_mel, 80) and per-source-frame windows (num_frames, W, D)."""
  mel = np.asarray(audio_lib.log_mel_spectrogram(wave), np.float32)
  if args.audio_features is None:
    windows = audio_lib.frame_windows(mel, num_frames, args.audio_window).astype(np.float32)
    return mel, windows, dict(kind="log_mel", window=args.audio_window)
  path = pathlib.Path(args.audio_features)
  if not path.exists():
    raise PrepareError(f"{path}: --audio_features file not found.")
  try:
    windows = audio_lib.load_audio_features(path, args.audio_features_kind, num_frames,
                                            window=args.audio_window)
  except (OSError, ValueError) as e:
    raise PrepareError(f"{path}: cannot use it as {args.audio_features_kind!r} features ({e}); "
                       "pass --audio_features_kind matching how it was computed.") from e
  return mel, np.asarray(windows, np.float32), dict(kind=args.audio_features_kind, path=str(path))


def _runs_summary(reasons: np.ndarray) -> list[dict[str, Any]]:
  """Cut runs as {start, stop, reason} (source frames, stop exclusive)."""
  runs, t = [], 0
  while t < len(reasons):
    if reasons[t]:
      start = t
      while t < len(reasons) and reasons[t] == reasons[start]:
        t += 1
      runs.append(dict(start=start, stop=t, reason=str(reasons[start])))
    else:
      t += 1
  return runs


def _work_dir(out: pathlib.Path, overwrite: bool) -> pathlib.Path:
  if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
    raise PrepareError(f"{out}: already exists and is not empty; pass --overwrite to replace it, "
                       "or choose another --out.")
  out.parent.mkdir(parents=True, exist_ok=True)
  return pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))


def prepare(args: argparse.Namespace) -> dict[str, Any]:
  """Runs every step for `args` (see `parse_args`); returns the summary."""
  with warnings.catch_warnings():
    # JAX warns on every fork once it runs; our subprocesses exec ffmpeg at once, which is safe.
    warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
    return _prepare(args)


def _prepare(args: argparse.Namespace) -> dict[str, Any]:
  start_time = time.perf_counter()
  timings: dict[str, float] = {}
  video = pathlib.Path(args.video)
  out = pathlib.Path(args.out)
  if args.size % 2 or args.size < 64:
    raise PrepareError(f"--size {args.size}: must be even and at least 64.")
  info = check_input(video, args.min_seconds)
  if out.resolve() == video.resolve():
    raise PrepareError(f"--out={out} is the input video; give a new folder for the prepared speaker.")
  check_writable(out.parent, "--out", out)
  model, model_name = _load_face_model(args.face_model)
  track_config = face_tracking.TrackConfig(size=args.size, crop_scale=args.crop_scale,
                                           max_gap=args.max_gap)
  fit_config = face_fitting.FitConfig(steps=args.fit_steps, rigid_steps=args.rigid_steps,
                                      focal_steps=args.focal_steps,
                                      focal_range=tuple(args.focal_range))
  work = _work_dir(out, args.overwrite)
  try:
    summary = _run(args, video, info, model, model_name, track_config, fit_config, work, timings)
    timings["total"] = time.perf_counter() - start_time
    summary["seconds"] = {k: round(v, 2) for k, v in timings.items()}
    summary["out"] = str(out)
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    video_io.replace_path(work, out)
  finally:
    if work.exists():
      shutil.rmtree(work, ignore_errors=True)
  return summary


def _run(args, video, info, model, model_name, track_config, fit_config, work, timings):
  """The steps, writing into `work`."""
  tic = time.perf_counter()
  expected = int(np.ceil(info["seconds"] * FPS))

  # 1. Audio.
  try:
    video_io.extract_audio(video, work / "audio.wav", SAMPLE_RATE)
  except video_io.VideoReadError as e:
    raise PrepareError(f"{video}: cannot extract its audio ({e.reason}); re-encode the audio "
                       "track (e.g. `-c:a aac`).") from e
  wave = read_wave(work / "audio.wav")
  audio_frames = audio_lib.num_video_frames(len(wave), SAMPLE_RATE, FPS)
  timings["audio"] = time.perf_counter() - tic

  # 2. Detection at 25 fps.
  tic = time.perf_counter()
  shapes = set()

  def recorded(frames):
    for frame in frames:
      shapes.add(frame.shape[:2])
      yield frame

  with tqdm(total=expected, desc="detect faces", unit="frame") as bar:
    raw = face_tracking.detect_boxes(recorded(iter_frames(video)), track_config, progress=bar)
  num = len(raw)
  if len(shapes) != 1:
    raise PrepareError(f"{video}: decoded {num} frames of sizes {sorted(shapes)}; re-encode it.")
  frame_shape = shapes.pop()
  if num / FPS < args.min_seconds:
    raise PrepareError(f"{video}: {num / FPS:.2f} s at {FPS} fps, shorter than the minimum of "
                       f"{args.min_seconds:g} s; pass a longer video.")
  plan = face_tracking.plan_track(raw, track_config)
  reasons = np.where(plan.keep, "", "no_face").astype(object)
  reasons[(reasons == "") & (np.arange(num) >= audio_frames)] = "no_audio"
  keep = reasons == ""
  timings["detect"] = time.perf_counter() - tic
  if keep.sum() < MIN_FRAMES:
    found = int((plan.status == face_tracking.DETECTED).sum())
    raise PrepareError(
        f"{video}: only {int(keep.sum())} usable frames (a face was detected in {found} of {num}); "
        f"at least {MIN_FRAMES} are needed. Use a video where one frontal face is visible "
        "most of the time.")
  keep_plan = face_tracking.TrackPlan(
      raw_boxes=plan.raw_boxes, boxes=plan.boxes, crop_boxes=plan.crop_boxes,
      status=np.where(keep, plan.status, face_tracking.NO_FACE).astype(np.uint8),
      outliers=plan.outliers)

  # 3. Crops and landmarks.
  tic = time.perf_counter()
  (work / "frames").mkdir()
  frame_index, landmarks = [], []
  with tqdm(total=int(keep.sum()), desc="crop + landmarks", unit="frame") as bar:
    for t, crop, lm in face_tracking.iter_crops(iter_frames(video), keep_plan, track_config):
      name = work / "frames" / video_io.frame_name(len(frame_index))
      if not cv2.imwrite(str(name), crop[..., ::-1]):
        raise PrepareError(f"{name}: cannot write the frame; check free disk space.")
      frame_index.append(t)
      landmarks.append(lm)
      bar.update(1)
  if len(frame_index) != keep.sum():
    raise PrepareError(f"{video}: the second decode gave {len(frame_index)} of {keep.sum()} "
                       "frames; the file may be damaged, re-encode it.")
  frame_index = np.asarray(frame_index, np.int64)
  landmarks = np.asarray(landmarks, np.float32)
  timings["crop_landmarks"] = time.perf_counter() - tic

  # 4. 3DMM fit, in source pixels: one pinhole camera for the whole video (a
  # moving crop would shift the principal point and scale the focal per frame).
  tic = time.perf_counter()
  size = args.size
  crop_boxes = plan.crop_boxes[frame_index]
  source_lm = np.stack([face_tracking.from_crop(lm, box, size)
                        for lm, box in zip(landmarks, crop_boxes)])
  with tqdm(total=1, desc="fit face model (jit)", unit="fit") as bar:
    fit = face_fitting.fit(source_lm, model, frame_shape, fit_config,
                           contiguous=np.diff(frame_index) == 1, focal=args.focal)
    bar.update(1)
  cameras = [face_tracking.crop_camera(box, size, fit.focal, fit.principal) for box in crop_boxes]
  crop_focal = np.array([c[0] for c in cameras], np.float32)
  crop_principal = np.array([c[1] for c in cameras], np.float32)
  fit_lm = np.stack([face_tracking.to_crop(p, box, size)
                     for p, box in zip(fit.landmarks, crop_boxes)]).astype(np.float32)
  residual = np.linalg.norm(fit_lm - landmarks, axis=-1).mean(-1)
  timings["fit"] = time.perf_counter() - tic

  # 5. Mouth and audio features.
  tic = time.perf_counter()
  count = len(frame_index)
  mouth = face_fitting.fitted_vertices(model, fit, model.mouth_vertex_ids).astype(np.float32)
  (work / "mouth_mask").mkdir()
  boxes = np.zeros((count, 4), np.float32)
  for i in tqdm(range(count), desc="mouth masks", unit="frame"):
    mouth_xy = face_fitting.project_np(mouth[i], fit.pose[i], crop_focal[i],
                                       tuple(crop_principal[i]))
    mask, boxes[i] = mouth_mask(mouth_xy, landmarks[i, 48:68], size)
    cv2.imwrite(str(work / "mouth_mask" / video_io.frame_name(i)), mask)
  mel, windows, feature_info = _audio_features(args, wave, num)
  timings["mouth_audio"] = time.perf_counter() - tic

  # 6. Layout.
  num_val = max(1, count // VAL_FRACTION_DENOMINATOR)
  split = dict(train=list(range(count - num_val)), val=list(range(count - num_val, count)))
  np.savez(work / "coeffs.npz", id=fit.id, exp=fit.exp, exp_names=np.array(model.exp_names),
           pose=fit.pose, focal=np.float32(fit.focal), principal=np.float32(fit.principal),
           image_size=np.int32(frame_shape), crop_focal=crop_focal,
           crop_principal=crop_principal, residual_px=residual.astype(np.float32))
  model.save(work / "face_model.npz")
  np.save(work / "mouth_vertices.npy", mouth)
  np.save(work / "landmarks.npy", landmarks)
  np.save(work / "fit_landmarks.npy", fit_lm)
  np.save(work / "mouth_boxes.npy", boxes)
  np.save(work / "frame_index.npy", frame_index)
  np.save(work / "crop_boxes.npy", crop_boxes.astype(np.float32))
  np.save(work / "audio_mel.npy", mel)
  np.save(work / "audio_features.npy", windows[frame_index])
  (work / "split.json").write_text(json.dumps(split) + "\n")

  # 7. Preview.
  tic = time.perf_counter()
  if not args.no_preview:
    _write_preview(work, model, fit, landmarks, fit_lm, crop_focal, crop_principal, wave,
                   frame_index, size)
  timings["preview"] = time.perf_counter() - tic

  counts = plan.counts()
  dropped = {r: int((reasons == r).sum()) for r in ("no_face", "no_audio") if (reasons == r).any()}
  warning_list = []
  if count / FPS < args.min_seconds:
    warning_list.append(f"only {count / FPS:.1f} s of usable frames (< {args.min_seconds:g} s)")
  if residual.mean() > 0.03 * size:
    warning_list.append(f"mean fit residual {residual.mean():.2f} px is large; check preview.mp4")
  return dict(
      video=str(video), fps=FPS, source_fps=info["fps"], source_size=list(info["size"]),
      source_seconds=round(info["seconds"], 3), size=size,
      frames=dict(total=num, kept=count, dropped=num - count, dropped_by_reason=dropped,
                  detected=int(((plan.status == face_tracking.DETECTED) & keep).sum()),
                  interpolated=int(((plan.status == face_tracking.INTERPOLATED) & keep).sum()),
                  rejected_outliers=counts["rejected_outliers"],
                  cut_runs=_runs_summary(reasons)),
      audio=dict(seconds=round(len(wave) / SAMPLE_RATE, 3), sample_rate=SAMPLE_RATE,
                 mel_frames=len(mel), features=feature_info,
                 feature_shape=list(windows[frame_index].shape)),
      fit=dict(face_model=model_name, n_id=model.n_id, n_exp=model.n_exp,
               mouth_vertices=int(len(model.mouth_vertex_ids)),
               focal_px=round(fit.focal, 2),
               focal_in_image_sizes=round(fit.focal / max(frame_shape), 3),
               mean_residual_px=round(float(residual.mean()), 4),
               median_residual_px=round(float(np.median(residual)), 4),
               max_residual_px=round(float(residual.max()), 4),
               mean_residual_source_px=round(fit.mean_residual_px, 4)),
      split=dict(train=len(split["train"]), val=len(split["val"])),
      warnings=warning_list)


def _write_preview(work, model, fit, landmarks, fit_lm, crop_focal, crop_principal, wave,
                   frame_index, size):
  """Streams preview frames into ffmpeg with the kept frames' audio slices."""
  side = max(size, 256)
  per_frame = SAMPLE_RATE // FPS
  padded = np.pad(wave, (0, max(0, (frame_index.max() + 1) * per_frame - len(wave))))
  pieces = padded[(frame_index[:, None] * per_frame + np.arange(per_frame)).ravel()]
  wav_path = work / ".preview.wav"
  wavfile.write(wav_path, SAMPLE_RATE, (np.clip(pieces, -1, 1) * 32767).astype(np.int16))
  writer = imageio_ffmpeg.write_frames(
      str(work / "preview.mp4"), (2 * side, side), fps=FPS, codec="libx264", quality=7,
      macro_block_size=2, audio_path=str(wav_path), audio_codec="aac",
      output_params=["-shortest"], ffmpeg_log_level="error")
  writer.send(None)
  try:
    for i in tqdm(range(len(frame_index)), desc="preview", unit="frame"):
      crop = cv2.imread(str(work / "frames" / video_io.frame_name(i)))[..., ::-1]
      verts = model.vertices(fit.id, fit.exp[i])
      xy = face_fitting.project_np(verts, fit.pose[i], crop_focal[i], tuple(crop_principal[i]))
      frame = preview_frame(crop, landmarks[i], fit_lm[i], xy, model.triangles, side)
      writer.send(np.ascontiguousarray(frame))
  finally:
    writer.close()
    wav_path.unlink(missing_ok=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--video", required=True, help="talking video with its audio track")
  parser.add_argument("--out", required=True, help="output folder (the layout above)")
  parser.add_argument("--face_model", default=None,
                      help="3DMM .npz (mean, id_basis, exp_basis, exp_names, triangles, "
                           "mouth_vertex_ids, landmark_vertex_ids); default: built-in model")
  parser.add_argument("--size", type=int, default=256, help="face crop side (even)")
  parser.add_argument("--min_seconds", type=float, default=10.0,
                      help="refuse videos shorter than this")
  parser.add_argument("--crop_scale", type=float, default=face_tracking.TrackConfig.crop_scale,
                      help="crop side / detected face box side")
  parser.add_argument("--max_gap", type=int, default=face_tracking.TrackConfig.max_gap,
                      help="longest run of frames without a face that is interpolated")
  parser.add_argument("--fit_steps", type=int, default=face_fitting.FitConfig.steps)
  parser.add_argument("--rigid_steps", type=int, default=face_fitting.FitConfig.rigid_steps)
  parser.add_argument("--focal_steps", type=int, default=face_fitting.FitConfig.focal_steps)
  parser.add_argument("--focal_range", type=float, nargs=2,
                      default=face_fitting.FitConfig.focal_range,
                      help="focal length search range, in crop sizes")
  parser.add_argument("--focal", type=float, default=None,
                      help="fix the focal length (crop pixels) instead of searching")
  parser.add_argument("--audio_features", default=None,
                      help="precomputed features (.npy) instead of the built-in log-mel")
  parser.add_argument("--audio_features_kind", default="hubert",
                      choices=audio_lib.FRAME_KINDS + audio_lib.WINDOW_KINDS,
                      help="layout of --audio_features (see load_audio_features)")
  parser.add_argument("--audio_window", type=int, default=16,
                      help="feature frames per video frame in audio_features.npy")
  parser.add_argument("--no_preview", action="store_true", help="skip preview.mp4")
  parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
  summary = prepare(parse_args(argv))
  print(json.dumps(summary), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(run_cli(main))
