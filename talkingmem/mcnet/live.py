"""Live animation: a photo driven by a camera (or a video file or stream standing in for one).

A reader thread keeps only the newest camera frame, so when the model is slower than the camera,
frames are dropped rather than queued (latency stays one frame's work, not a growing backlog). Each
frame is animated at batch 1 by the jitted step of `animate.animation_step`, compiled once before the
clock starts. The driving crop is the face box of the first frame that has a face (fixed after that;
dlib on every frame would cost more than the model), or the centred square with crop=False.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, Iterator

import cv2
import jax.numpy as jnp
import numpy as np

from data_pipelines import face_tracking
from talkingmem.mcnet import animate


class LatestFrameReader:
  """Reads `source` (a camera index or a video path/URL) on a thread, keeping only the newest frame.

  A file is read at its own frame rate (`realtime`), as a camera would deliver it; `dropped` counts
  the frames that were replaced before anyone took them.
  """

  def __init__(self, source: int | str, realtime: bool = True):
    self.capture = cv2.VideoCapture(source)
    if not self.capture.isOpened():
      raise animate.AnimationInputError(f"--camera {source!r} cannot be opened (no such camera or file)")
    self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0) or animate.DEFAULT_FPS
    self.is_file = isinstance(source, str)
    self.realtime = realtime
    self.captured = self.dropped = 0
    self._frame: tuple[float, np.ndarray] | None = None
    self._done = False
    self._condition = threading.Condition()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()

  def _run(self) -> None:
    start = time.perf_counter()
    while not self._stop.is_set():
      ok, bgr = self.capture.read()
      if not ok:
        break
      if self.is_file and self.realtime:  # a file delivers frames at its fps, like a camera
        time.sleep(max(0.0, start + self.captured / self.fps - time.perf_counter()))
      with self._condition:
        if self._frame is not None:
          self.dropped += 1
        self._frame = (time.perf_counter(), np.ascontiguousarray(bgr[..., ::-1]))
        self.captured += 1
        self._condition.notify()
    with self._condition:
      self._done = True
      self._condition.notify()

  def frames(self) -> Iterator[tuple[float, np.ndarray]]:
    """(capture time, RGB uint8 frame), the newest each time, until the source ends."""
    while True:
      with self._condition:
        self._condition.wait_for(lambda: self._frame is not None or self._done)
        if self._frame is None:
          return
        item, self._frame = self._frame, None
      yield item

  def close(self) -> None:
    self._stop.set()
    self._thread.join(timeout=5)
    self.capture.release()


@dataclasses.dataclass
class LiveStats:
  """Frames shown, frames dropped, achieved frames/s and capture-to-result latency."""
  frames: int
  dropped: int
  captured: int
  fps: float
  latency_ms_mean: float
  latency_ms_p95: float
  compile_s: float = 0.0

  def line(self) -> str:
    return (f"live: {self.frames} frames animated, {self.dropped} dropped of {self.captured} captured; "
            f"{self.fps:.1f} frames/s, latency {self.latency_ms_mean:.0f} ms (p95 {self.latency_ms_p95:.0f} ms); "
            f"compiled in {self.compile_s:.1f} s")


class LiveAnimator:
  """One source photo, animated frame by frame; relative motion starts from the first driving frame."""

  def __init__(self, loaded: animate.LoadedModel, photo: np.ndarray, crop: bool = True,
               relative: bool = True, adapt_scale: bool = False):
    self.loaded, self.crop, self.size = loaded, crop, loaded.image_size
    self.source = jnp.asarray(animate.prepare_source(photo, self.size, crop))
    detect = animate.keypoint_detector(loaded.model)
    self.detect = lambda frame: detect(loaded.variables, jnp.asarray(frame[None]))
    self.kp_source = self.detect(np.asarray(self.source))
    self.step = animate.animation_step(loaded.model, relative, adapt_scale)
    self.kp_initial = None
    self.crop_box: np.ndarray | None = None
    self.config = animate.track_config(self.size)

  def compile(self) -> float:
    """Compiles the batch-1 step (seconds), so the first camera frame is not kept waiting for XLA."""
    start = time.perf_counter()
    blank = jnp.zeros((1, self.size, self.size, 3), jnp.float32)
    self.step(self.loaded.variables, self.source, self.kp_source, self.kp_source, blank).block_until_ready()
    return time.perf_counter() - start

  def driving_crop(self, frame: np.ndarray) -> np.ndarray | None:
    """The model-size float crop of a camera frame; None while no face has been seen (crop=True)."""
    frame = animate.as_float(frame)
    if not self.crop:
      return animate.square_resize(frame, self.size)
    if self.crop_box is None:
      box = face_tracking.detect_face(animate.to_uint8(frame), self.config)
      if box is None:
        return None
      self.crop_box = face_tracking.plan_track(box[None], self.config).crop_boxes[0]
    return face_tracking.crop_frame(frame, self.crop_box, self.size)

  def __call__(self, frame: np.ndarray) -> np.ndarray | None:
    """The animated (size, size, 3) uint8 result for one RGB camera frame (None before a face)."""
    crop = self.driving_crop(frame)
    if crop is None:
      return None
    if self.kp_initial is None:
      self.kp_initial = self.detect(crop)
    pred = self.step(self.loaded.variables, self.source, self.kp_source, self.kp_initial,
                     jnp.asarray(crop[None]))
    return animate.to_uint8(np.asarray(pred[0]))


def run_live(animator: LiveAnimator, reader: LatestFrameReader, show: Callable[[np.ndarray], bool],
             max_frames: int | None = None) -> LiveStats:
  """Animates the reader's newest frames until it ends, `show` returns False or max_frames are done.

  Call `animator.compile()` before opening the reader, or the compilation's frames count as dropped.
  """
  latencies, start, done = [], None, 0
  for captured_at, frame in reader.frames():
    start = start or time.perf_counter()
    result = animator(frame)
    if result is None:
      continue
    latencies.append(time.perf_counter() - captured_at)
    done += 1
    if not show(result) or (max_frames and done >= max_frames):
      break
  elapsed = time.perf_counter() - start if start else 0.0
  reader.close()
  ms = np.asarray(latencies or [0.0]) * 1000
  return LiveStats(frames=done, dropped=reader.dropped, captured=reader.captured,
                   fps=done / elapsed if elapsed > 0 else 0.0, latency_ms_mean=float(ms.mean()),
                   latency_ms_p95=float(np.percentile(ms, 95)))
