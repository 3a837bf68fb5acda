"""Reading and writing talking-head videos as (T, H, W, 3) uint8 RGB arrays.

Supported containers, chosen by what `path` is:
  * a folder of frames (`0000000.png`, ... sorted by name; png/jpg/jpeg/bmp),
  * `.mp4` / `.mov` / `.avi` / `.mkv` / `.webm` (OpenCV's FFmpeg backend, with
    imageio-ffmpeg as a fallback),
  * `.gif`,
  * a single `.png`/`.jpg` strip (first-order-model convention: the frames are
    concatenated horizontally, so width = T * H).

Writing uses the ffmpeg binary bundled with imageio-ffmpeg, so nothing needs
to be installed system-wide. Every write goes to a temporary name first and is
renamed into place, so a crash never leaves a half-written video behind.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence

import cv2
import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageSequence

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")  # .mpg: GRID.
GIF_EXTENSIONS = (".gif",)
STRIP_EXTENSIONS = (".png", ".jpg", ".jpeg")
FRAME_NAME_DIGITS = 7

PathLike = str | os.PathLike


class VideoReadError(IOError):
  """A video is missing, empty, corrupt or in an unsupported format."""

  def __init__(self, path: PathLike, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = str(path)
    self.reason = reason


# ----------------------------------------------------------------------------
# Frame conversion helpers.
# ----------------------------------------------------------------------------


def to_rgb_uint8(frame: np.ndarray) -> np.ndarray:
  """Converts gray / gray+alpha / RGBA / 16-bit / float frames to RGB uint8."""
  frame = np.asarray(frame)
  if frame.dtype == np.uint16:
    frame = (frame.astype(np.uint32) * 255 + 32767) // 65535
  elif np.issubdtype(frame.dtype, np.floating):
    frame = np.clip(frame, 0.0, 1.0) * 255.0 + 0.5
  elif frame.dtype == np.bool_:
    frame = frame.astype(np.uint8) * 255
  frame = frame.astype(np.uint8, copy=False)
  if frame.ndim == 2:
    frame = frame[..., None]
  if frame.ndim != 3:
    raise ValueError(f"expected a 2-D or 3-D frame, got shape {frame.shape}")
  channels = frame.shape[-1]
  if channels in (1, 2):  # Gray, or gray + alpha: drop alpha, repeat gray.
    frame = np.repeat(frame[..., :1], 3, axis=-1)
  elif channels == 4:  # Alpha is dropped, not composited: faces are opaque.
    frame = frame[..., :3]
  elif channels != 3:
    raise ValueError(f"unsupported channel count {channels}")
  return np.ascontiguousarray(frame)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Resizes (T, H, W, 3) frames to size = (height, width)."""
  height, width = size
  if frames.shape[1:3] == (height, width):
    return frames
  shrink = height < frames.shape[1] or width < frames.shape[2]
  interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
  out = np.empty((len(frames), height, width, 3), np.uint8)
  for i, frame in enumerate(frames):
    out[i] = cv2.resize(frame, (width, height), interpolation=interp)
  return out


def decode_image(data: bytes | np.ndarray) -> np.ndarray:
  """Decodes an encoded image (PNG/JPEG bytes) to an RGB uint8 frame."""
  buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
  img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
  if img is None:
    raise ValueError("undecodable image bytes")
  return _bgr_to_rgb(img)


def encode_image(frame: np.ndarray, fmt: str = "png", quality: int = 95) -> bytes:
  """Encodes an RGB uint8 frame as PNG or JPEG bytes."""
  bgr = cv2.cvtColor(to_rgb_uint8(frame), cv2.COLOR_RGB2BGR)
  ext = ".png" if fmt == "png" else ".jpg"
  params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
  ok, buf = cv2.imencode(ext, bgr, params)
  if not ok:
    raise ValueError(f"could not encode frame as {fmt}")
  return buf.tobytes()


def _bgr_to_rgb(img: np.ndarray) -> np.ndarray:
  """OpenCV returns BGR(A); reorders colour channels, then normalises."""
  if img.ndim == 3 and img.shape[-1] == 3:
    img = img[..., ::-1]
  elif img.ndim == 3 and img.shape[-1] == 4:
    img = img[..., [2, 1, 0, 3]]
  return to_rgb_uint8(img)


# ----------------------------------------------------------------------------
# Reading.
# ----------------------------------------------------------------------------


def list_frame_files(folder: PathLike) -> list[pathlib.Path]:
  """Sorted frame image files of a frames folder (hidden files skipped)."""
  folder = pathlib.Path(folder)
  return sorted(
      p for p in folder.iterdir()
      if p.suffix.lower() in FRAME_EXTENSIONS and not p.name.startswith("."))


def read_image_file(path: PathLike) -> np.ndarray:
  """Reads one frame image file as RGB uint8."""
  img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
  if img is None:
    raise VideoReadError(path, "unreadable image")
  return _bgr_to_rgb(img)


def _read_folder(path: pathlib.Path) -> np.ndarray:
  files = list_frame_files(path)
  if not files:
    raise VideoReadError(path, "no frame images in folder")
  frames = [read_image_file(f) for f in files]
  shapes = {f.shape for f in frames}
  if len(shapes) != 1:
    raise VideoReadError(path, f"frames of different sizes {sorted(shapes)}")
  return np.stack(frames)


def iter_video_file_frames(path: PathLike) -> Iterator[np.ndarray]:
  """Yields RGB frames of a container file (mp4/mov/avi/...), decoding lazily."""
  cap = cv2.VideoCapture(str(path))
  try:
    if cap.isOpened():
      ok, frame = cap.read()
      if ok:
        while ok:
          yield _bgr_to_rgb(frame)
          ok, frame = cap.read()
        return
  finally:
    cap.release()
  # OpenCV could not open or decode it: give ffmpeg itself a chance.
  yield from _iter_ffmpeg_frames(path)


def _iter_ffmpeg_frames(path: PathLike) -> Iterator[np.ndarray]:
  try:
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(gen)
    width, height = meta["size"]
    for buf in gen:
      yield np.frombuffer(buf, np.uint8).reshape(height, width, 3).copy()
  except (RuntimeError, OSError, StopIteration, KeyError) as e:
    raise VideoReadError(path, f"ffmpeg cannot decode: {_first_line(e)}") from e


def _read_video_file(path: pathlib.Path) -> np.ndarray:
  if path.stat().st_size == 0:
    raise VideoReadError(path, "empty file")
  frames = list(iter_video_file_frames(path))
  if not frames:
    raise VideoReadError(path, "no decodable frames")
  return np.stack(frames)


def _read_gif(path: pathlib.Path) -> np.ndarray:
  try:
    with Image.open(path) as img:
      frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(img)]
  except (OSError, ValueError, SyntaxError) as e:
    raise VideoReadError(path, f"unreadable gif: {_first_line(e)}") from e
  if not frames:
    raise VideoReadError(path, "gif without frames")
  return np.stack(frames)


def _read_strip(path: pathlib.Path) -> np.ndarray:
  strip = read_image_file(path)
  height, width = strip.shape[:2]
  if height == 0 or width % height:
    raise VideoReadError(
        path, f"strip width {width} is not a multiple of its height {height}")
  num = width // height
  return np.ascontiguousarray(
      strip.reshape(height, num, height, 3).transpose(1, 0, 2, 3))


def read_video(path: PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
  """Reads a whole video as (T, H, W, 3) uint8 RGB.

  Args:
    path: frames folder, video file, gif or horizontal PNG/JPEG strip.
    size: optional (height, width) to resize every frame to.

  Returns:
    The frames.

  Raises:
    VideoReadError: if the video is missing, empty, corrupt or unsupported.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise VideoReadError(path, "does not exist")
  suffix = path.suffix.lower()
  try:
    if path.is_dir():
      frames = _read_folder(path)
    elif suffix in VIDEO_EXTENSIONS:
      frames = _read_video_file(path)
    elif suffix in GIF_EXTENSIONS:
      frames = _read_gif(path)
    elif suffix in STRIP_EXTENSIONS:
      frames = _read_strip(path)
    else:
      raise VideoReadError(path, f"unsupported video format {suffix!r}")
  except VideoReadError:
    raise
  except (OSError, ValueError, cv2.error) as e:
    raise VideoReadError(path, _first_line(e)) from e
  if size is not None:
    frames = resize_frames(frames, size)
  return frames


# ----------------------------------------------------------------------------
# Writing.
# ----------------------------------------------------------------------------


def _check_frames(frames: np.ndarray) -> np.ndarray:
  frames = np.asarray(frames)
  if frames.ndim == 3:  # (T, H, W) gray.
    frames = frames[..., None]
  if frames.ndim != 4 or len(frames) == 0:
    raise ValueError(f"expected non-empty (T, H, W, C) frames, got {frames.shape}")
  return np.stack([to_rgb_uint8(f) for f in frames])


def _temp_sibling(path: pathlib.Path, suffix: str = "") -> pathlib.Path:
  """A unique hidden name next to `path` (same filesystem, so rename is atomic)."""
  fd, name = tempfile.mkstemp(
      prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
  os.close(fd)
  os.unlink(name)
  return pathlib.Path(name)


def _run_ffmpeg(args: Sequence[str], stdin: bytes | None = None) -> str:
  """Runs the bundled ffmpeg; returns stderr, raises with its tail on failure."""
  proc = subprocess.run(
      [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
      if stdin is None else
      [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", *args],
      input=stdin, capture_output=True, check=False)
  err = proc.stderr.decode("utf-8", "replace")
  if proc.returncode:
    raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {err[-2000:]}")
  return err


def _write_mp4(tmp: pathlib.Path, frames: np.ndarray, fps: float,
               audio_path: PathLike | None) -> None:
  _, height, width, _ = frames.shape
  args = ["-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
          "-r", f"{fps}", "-i", "pipe:0"]
  if audio_path is not None:
    args += ["-i", str(audio_path)]
  args += ["-map", "0:v:0"]
  if audio_path is not None:
    # The audio is padded with silence (apad) and the output cut at the video's duration (-t;
    # -shortest overshoots by the muxer's buffer), so an audio track that ends early (AAC priming)
    # never drops the last video frames and a longer one never outlasts them.
    args += ["-map", "1:a:0", "-c:a", "aac", "-b:a", "128k", "-af", "apad",
             "-t", f"{len(frames) / fps:.6f}"]
  # yuv420p needs even sizes; pad odd ones by one pixel instead of failing.
  if height % 2 or width % 2:
    args += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
  args += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "17",
           "-preset", "medium", "-movflags", "+faststart", "-f", "mp4", str(tmp)]
  _run_ffmpeg(args, stdin=frames.tobytes())


def _write_gif(tmp: pathlib.Path, frames: np.ndarray, fps: float) -> None:
  images = [Image.fromarray(f) for f in frames]
  images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                 duration=max(int(round(1000.0 / fps)), 10), loop=0,
                 optimize=False, disposal=1)


def frame_name(index: int, ext: str = ".png") -> str:
  """File name of frame `index` in a frames folder, e.g. `0000042.png`."""
  return f"{index:0{FRAME_NAME_DIGITS}d}{ext}"


def _write_folder(tmp: pathlib.Path, frames: np.ndarray) -> None:
  tmp.mkdir(parents=True)
  for i, frame in enumerate(frames):
    if not cv2.imwrite(str(tmp / frame_name(i)), frame[..., ::-1]):
      raise OSError(f"could not write frame {i} to {tmp}")


def replace_path(tmp: pathlib.Path, path: pathlib.Path) -> None:
  """Renames tmp (a file or folder next to `path`) onto path; an existing folder is swapped out
  first, so readers see the old or the new one, never a mix."""
  if path.is_dir() and not path.is_symlink():
    old = _temp_sibling(path, ".old")
    os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
  else:
    os.replace(tmp, path)


def write_video(path: PathLike, frames: np.ndarray, fps: float = 25.0,
                audio_path: PathLike | None = None) -> None:
  """Writes (T, H, W, C) frames; the suffix of `path` picks the format.

  `.mp4`: H.264 yuv420p (+ AAC audio from `audio_path`); `.gif`; no suffix: a
  folder of `0000000.png` frames. Written to a temporary name, then renamed.

  Args:
    path: destination.
    frames: uint8 (or float in [0, 1], or uint16) frames, gray/RGB/RGBA.
    fps: frame rate (mp4 and gif).
    audio_path: audio file to mux into an mp4 (any format ffmpeg reads).
  """
  path = pathlib.Path(path)
  frames = _check_frames(frames)
  suffix = path.suffix.lower()
  if audio_path is not None and suffix != ".mp4":
    raise ValueError(f"audio can only be muxed into .mp4, not {path}")
  if fps <= 0:
    raise ValueError(f"fps must be positive, got {fps}")
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = _temp_sibling(path, suffix)
  try:
    if suffix == ".mp4":
      _write_mp4(tmp, frames, fps, audio_path)
    elif suffix == ".gif":
      _write_gif(tmp, frames, fps)
    elif not suffix:
      _write_folder(tmp, frames)
    else:
      raise ValueError(f"unsupported output format {suffix!r} (mp4, gif, folder)")
    replace_path(tmp, path)
  finally:
    if tmp.is_dir():
      shutil.rmtree(tmp, ignore_errors=True)
    elif tmp.exists():
      tmp.unlink()


# ----------------------------------------------------------------------------
# Metadata and audio.
# ----------------------------------------------------------------------------


def _probe(path: PathLike) -> str:
  """ffmpeg's stream description of a file (stderr of `ffmpeg -i`)."""
  proc = subprocess.run(
      [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
      capture_output=True, check=False)
  return proc.stderr.decode("utf-8", "replace")


def video_info(path: PathLike) -> dict:
  """Returns {'frames', 'fps', 'size': (height, width), 'has_audio'}.

  `fps` is None for frames folders and strips, which carry no timing.

  Raises:
    VideoReadError: for unreadable inputs.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise VideoReadError(path, "does not exist")
  suffix = path.suffix.lower()
  if path.is_dir():
    files = list_frame_files(path)
    if not files:
      raise VideoReadError(path, "no frame images in folder")
    height, width = read_image_file(files[0]).shape[:2]
    return dict(frames=len(files), fps=None, size=(height, width), has_audio=False)
  if suffix in GIF_EXTENSIONS:
    try:
      with Image.open(path) as img:
        n = getattr(img, "n_frames", 1)
        duration = img.info.get("duration") or 0
        return dict(frames=n, fps=(1000.0 / duration) if duration else None,
                    size=(img.height, img.width), has_audio=False)
    except OSError as e:
      raise VideoReadError(path, f"unreadable gif: {_first_line(e)}") from e
  if suffix in STRIP_EXTENSIONS:
    frames = _read_strip(path)
    return dict(frames=len(frames), fps=None, size=frames.shape[1:3],
                has_audio=False)
  if suffix not in VIDEO_EXTENSIONS:
    raise VideoReadError(path, f"unsupported video format {suffix!r}")
  probe = _probe(path)
  match = re.search(r"Video:.*?(\d{2,5})x(\d{2,5})", probe)
  if not match:
    raise VideoReadError(path, "no video stream")
  width, height = int(match.group(1)), int(match.group(2))
  fps_match = re.search(r"([\d.]+) fps", probe)
  try:
    num_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
  except (RuntimeError, OSError) as e:
    raise VideoReadError(path, f"ffmpeg cannot count frames: {_first_line(e)}") from e
  return dict(frames=int(num_frames),
              fps=float(fps_match.group(1)) if fps_match else None,
              size=(height, width),
              has_audio=bool(re.search(r"Stream #.*Audio:", probe)))


def extract_audio(path: PathLike, wav_path: PathLike, sample_rate: int = 16000) -> None:
  """Writes the audio track of `path` as mono 16-bit PCM WAV (atomically).

  Raises:
    VideoReadError: if the file has no audio stream or cannot be decoded.
  """
  wav_path = pathlib.Path(wav_path)
  if not re.search(r"Stream #.*Audio:", _probe(path)):
    raise VideoReadError(path, "no audio stream")
  wav_path.parent.mkdir(parents=True, exist_ok=True)
  tmp = _temp_sibling(wav_path, ".wav")
  try:
    _run_ffmpeg(["-y", "-i", str(path), "-vn", "-ac", "1", "-ar", str(sample_rate),
                 "-c:a", "pcm_s16le", "-f", "wav", str(tmp)])
    os.replace(tmp, wav_path)
  except RuntimeError as e:
    raise VideoReadError(path, f"audio extraction failed: {_first_line(e)}") from e
  finally:
    if tmp.exists():
      tmp.unlink()


def mux_audio(video: PathLike, wav: PathLike, out: PathLike) -> None:
  """Writes `out`: the video stream of `video` (copied, not re-encoded) with the audio of `wav`
  (corpora that ship audio separately, e.g. GRID's .wav release); `out` should be .mkv.

  Raises:
    VideoReadError: if ffmpeg cannot read either input.
  """
  out = pathlib.Path(out)
  tmp = _temp_sibling(out, out.suffix)
  try:
    # genpts: MPEG-1 program streams (GRID) lack the timestamps Matroska needs for a stream copy.
    _run_ffmpeg(["-y", "-fflags", "+genpts", "-i", str(video), "-i", str(wav), "-map", "0:v:0",
                 "-map", "1:a:0",
                 "-c:v", "copy", "-c:a", "pcm_s16le", str(tmp)])
    os.replace(tmp, out)
  except RuntimeError as e:
    raise VideoReadError(video, f"cannot mux {wav} into it: {_first_line(e)}") from e
  finally:
    if tmp.exists():
      tmp.unlink()


def _first_line(e: BaseException) -> str:
  text = str(e).strip()
  return text.splitlines()[0] if text else type(e).__name__
