"""Per-clip motion: head-pose trajectories, speech-like expressions, blinks,
gaze and occluder tracks.

Everything is drawn from the `numpy.random.Generator` passed in, in a fixed
order, so a clip is reproducible bit-for-bit from its seed. Expressions are
produced by name and mapped onto whatever expression basis the face model has
(unknown names stay 0), so a user-supplied 3DMM works too.
"""

import dataclasses
from typing import Sequence

import numpy as np
from scipy import ndimage

FPS = 25.0
STYLES = ("calm", "lively", "turn")  # "turn": a large yaw sweep within the clip.


@dataclasses.dataclass(frozen=True)
class OccluderTrack:
  kind: str  # "hand" or "microphone" (see occluders.KINDS).
  track: np.ndarray  # (T, 4) x, y (image fractions), scale, angle per frame.
  visible: np.ndarray  # (T,) bool.
  colour: np.ndarray  # (3,) sRGB.


@dataclasses.dataclass(frozen=True)
class ClipMotion:
  pose: np.ndarray  # (T, 6) [yaw, pitch, roll, tx, ty, scale], see renderer.
  exp_coeffs: np.ndarray  # (T, n_exp)
  gaze: np.ndarray  # (T, 2) eye yaw, pitch relative to the head (radians).
  occluders: tuple[OccluderTrack, ...]
  style: str


def smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
  """(n,) Gaussian-smoothed white noise with unit standard deviation.

  Normalised by the filter's theoretical gain (not the sample's std), so short
  clips are not inflated to unit variance.
  """
  pad = int(3 * sigma) + 1
  white = rng.standard_normal(n + 2 * pad)
  if sigma <= 0:
    return white[pad:pad + n]
  smooth = ndimage.gaussian_filter1d(white, sigma, mode="reflect")
  return smooth[pad:pad + n] * np.sqrt(2 * np.sqrt(np.pi) * sigma)


def _bump(t, centre, half_width):
  """Raised-cosine pulse: 1 at the centre, 0 beyond +-half_width."""
  x = np.clip((t - centre) / half_width, -1, 1)
  return 0.5 * (1 + np.cos(np.pi * x))


def _smooth_step(t, start, duration):
  x = np.clip((t - start) / max(duration, 1e-6), 0, 1)
  return x * x * (3 - 2 * x)


def head_pose(rng: np.random.Generator, num_frames: int, fps: float, style: str,
              head_motion: float = 1.0) -> np.ndarray:
  """(T, 6) smooth head pose; "turn" clips sweep yaw by up to ~50 degrees.

  head_motion scales the movement within the clip (rotation and translation wander, nods, the turn's
  sweep); the random draws are the same whatever its value, only these amplitudes change.
  """
  t = np.arange(num_frames) / fps
  lively = {"calm": 0.4, "lively": 1.0, "turn": 0.7}[style]
  moving = lively * head_motion  # Amplitudes only: how many nods and the draws do not change.
  sig = 0.45 * fps
  yaw = rng.normal(0, 0.18) + 0.16 * moving * smooth_noise(rng, num_frames, sig)
  pitch = rng.normal(0, 0.08) + 0.06 * moving * smooth_noise(rng, num_frames, sig)
  roll = rng.normal(0, 0.05) + 0.04 * moving * smooth_noise(rng, num_frames, sig)
  if style == "turn":
    start = rng.uniform(0.1, 0.5) * t[-1] if num_frames > 1 else 0.0
    sweep = rng.choice([-1, 1]) * rng.uniform(0.5, 0.9) * head_motion
    yaw = yaw - sweep / 2 + sweep * _smooth_step(t, start, rng.uniform(0.4, 1.0))
  # Nods: quick pitch pulses while talking.
  for _ in range(rng.poisson(0.4 * lively * max(t[-1], 0.04))):
    pitch = pitch + rng.uniform(0.03, 0.1) * head_motion * _bump(t, rng.uniform(0, t[-1] + 1e-6), 0.25)
  tx = rng.normal(0, 0.025) + 0.015 * moving * smooth_noise(rng, num_frames, 0.8 * fps)
  ty = rng.normal(0, 0.02) + 0.01 * moving * smooth_noise(rng, num_frames, 0.8 * fps)
  scale = rng.uniform(0.88, 1.1) * (1 + 0.02 * lively * smooth_noise(rng, num_frames, fps))
  pose = np.stack([np.clip(yaw, -1.0, 1.0), np.clip(pitch, -0.4, 0.4), np.clip(roll, -0.3, 0.3),
                   tx, ty, scale], 1)
  return pose.astype(np.float32)


def speech_expressions(rng: np.random.Generator, num_frames: int, fps: float
                       ) -> dict[str, np.ndarray]:
  """Named (T,) expression tracks: syllable-rate jaw/lip motion, smiles, brows."""
  t = np.arange(num_frames) / fps
  end = t[-1] + 1e-6
  out = {n: np.zeros(num_frames) for n in (
      "jaw_open", "lip_round", "lip_stretch", "lip_press", "lip_tuck", "smile_left",
      "smile_right", "brow_raise", "brow_frown", "upper_lip_raise", "mouth_shift", "cheek_puff")}
  talking = rng.random() < 0.9
  amp = rng.uniform(0.6, 1.1)
  rate = rng.uniform(3.5, 5.5)  # Syllables per second.
  time = rng.uniform(-0.2, 0.1)
  while talking and time < end + 0.3:
    if rng.random() < 0.12:  # A pause between phrases.
      time += rng.uniform(0.25, 0.7)
      continue
    dur = rng.gamma(6.0, 1.0 / (6.0 * rate))
    half = 0.6 * dur + 0.03
    centre = time + dur / 2
    out["jaw_open"] += amp * rng.uniform(0.15, 0.85) * _bump(t, centre, half)
    if rng.random() < 0.3:
      out["lip_round"] += rng.uniform(0.3, 0.9) * _bump(t, centre, 1.3 * half)
    elif rng.random() < 0.4:
      out["lip_stretch"] += rng.uniform(0.2, 0.6) * _bump(t, centre, 1.3 * half)
    if rng.random() < 0.15:  # Bilabial closure (/p b m/) at the syllable onset.
      out["lip_press"] += rng.uniform(0.5, 1.0) * _bump(t, time, 0.07)
      out["jaw_open"] *= 1 - _bump(t, time, 0.06)
    elif rng.random() < 0.08:  # Labiodental (/f v/).
      out["lip_tuck"] += rng.uniform(0.5, 1.0) * _bump(t, time, 0.08)
    out["upper_lip_raise"] += rng.uniform(0.0, 0.4) * _bump(t, centre, half)
    if rng.random() < 0.08:  # Emphasis.
      out["brow_raise"] += rng.uniform(0.3, 1.0) * _bump(t, centre, 0.35)
    time += dur
  if rng.random() < 0.3:  # A smile episode.
    start, length = rng.uniform(-0.5, end), rng.uniform(0.5, 2.5)
    ramp = _smooth_step(t, start, 0.3) - _smooth_step(t, start + length, 0.4)
    level = rng.uniform(0.3, 0.9) * ramp
    side = rng.choice(["lip_stretch", "lip_stretch", "smile_left", "smile_right"])
    out[side] += level
  if rng.random() < 0.2:
    amount = rng.uniform(0.2, 0.8)
    out["brow_frown"] += amount * _bump(t, rng.uniform(0, end), rng.uniform(0.4, 1.2))
  if rng.random() < 0.15:
    amount = rng.uniform(0.3, 0.9)
    out["brow_raise"] += amount * _bump(t, rng.uniform(0, end), rng.uniform(0.4, 1.2))
  if rng.random() < 0.04:
    out["cheek_puff"] += rng.uniform(0.5, 1.0) * _bump(t, rng.uniform(0, end), 0.5)
  out["mouth_shift"] = 0.25 * smooth_noise(rng, num_frames, 0.5 * fps)
  for name, track in out.items():
    out[name] = np.clip(track, -1.0, 1.0) if name == "mouth_shift" else np.clip(track, 0.0, 1.0)
  return out


def blinks(rng: np.random.Generator, num_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
  """(left, right) eyelid closure tracks in [0, 1]: fast close, slower open."""
  t = np.arange(num_frames) / fps
  end = t[-1] + 1e-6
  droop = rng.uniform(0.0, 0.2)
  left = np.full(num_frames, droop)
  right = np.full(num_frames, droop)
  rate = rng.uniform(0.25, 0.7)  # Blinks per second.
  time = rng.exponential(1 / rate) - 0.3
  while time < end:
    close, hold, reopen = rng.uniform(0.06, 0.1), rng.uniform(0.0, 0.06), rng.uniform(0.12, 0.2)
    shape = _smooth_step(t, time, close) * (1 - _smooth_step(t, time + close + hold, reopen))
    wink = rng.random()
    if wink > 0.05:
      left = np.maximum(left, shape)
    if wink < 0.05 or wink > 0.1:
      right = np.maximum(right, shape)
    time += close + hold + reopen + rng.exponential(1 / rate)
  return left, right


def gaze_track(rng: np.random.Generator, num_frames: int, fps: float,
               yaw: np.ndarray) -> np.ndarray:
  """(T, 2) eye yaw/pitch: saccades between fixations, partly towards the camera."""
  t = np.arange(num_frames) / fps
  out = np.zeros((num_frames, 2))
  target = rng.normal(0, [0.15, 0.08])
  time = 0.0
  while True:
    nxt = time + rng.exponential(0.9)
    out[(t >= time) & (t < nxt)] = target
    if nxt > t[-1]:
      break
    time, target = nxt, rng.normal(0, [0.15, 0.08])
  out[:, 0] -= 0.4 * (yaw - yaw.mean())  # Eyes counter-rotate to keep looking ahead.
  out = ndimage.gaussian_filter1d(out, 0.7, axis=0, mode="nearest")
  return np.clip(out, [-0.45, -0.3], [0.45, 0.3])


def occluder_tracks(rng: np.random.Generator, num_frames: int, fps: float,
                    skin: np.ndarray, p_hand: float = 0.12, p_mic: float = 0.1
                    ) -> tuple[OccluderTrack, ...]:
  """Occasional hand passing over the face and a microphone in front of the chin."""
  t = np.arange(num_frames) / fps
  end = t[-1] + 1e-6
  tracks = []
  if rng.random() < p_hand:
    x = rng.uniform(0.25, 0.75) + 0.05 * smooth_noise(rng, num_frames, fps)
    start, stay = rng.uniform(-0.3, 0.6) * end, rng.uniform(0.3, 1.0) * end + 0.2
    rise = rng.uniform(0.15, 0.4)
    enter = _smooth_step(t, start, rise) * (1 - _smooth_step(t, start + stay, rise))
    y = 1.45 - (1.45 - rng.uniform(0.45, 0.75)) * enter
    scale = np.full(num_frames, rng.uniform(0.3, 0.45))
    angle = rng.uniform(-0.5, 0.5) + 0.1 * smooth_noise(rng, num_frames, fps)
    colour = np.clip(skin * rng.uniform(0.9, 1.05), 0, 1)
    tracks.append(OccluderTrack("hand", np.stack([x, y, scale, angle], 1).astype(np.float32),
                                y < 1.3, colour))
  if rng.random() < p_mic:
    x = rng.uniform(0.35, 0.65) + 0.01 * smooth_noise(rng, num_frames, fps)
    y = rng.uniform(0.74, 0.86) + 0.01 * smooth_noise(rng, num_frames, fps)
    scale = np.full(num_frames, rng.uniform(0.18, 0.28))
    angle = np.full(num_frames, rng.uniform(-0.35, 0.35))
    colour = np.full(3, rng.uniform(0.2, 0.45))
    tracks.append(OccluderTrack("microphone", np.stack([x, y, scale, angle], 1).astype(np.float32),
                                np.ones(num_frames, bool), colour))
  return tuple(tracks)


def sample_clip_motion(rng: np.random.Generator, num_frames: int, exp_names: Sequence[str],
                       fps: float = FPS, skin: np.ndarray | None = None,
                       style: str | None = None, head_motion: float = 1.0) -> ClipMotion:
  """Draws all per-frame motion of one clip.

  Args:
    rng: the clip's generator (consumed in a fixed order).
    num_frames: T.
    exp_names: the face model's expression names, fixing the coefficient order.
    fps: frame rate the motion is sampled at.
    skin: (3,) colour for a hand occluder.
    style: one of STYLES; drawn at random when None.
    head_motion: scales the head's movement within the clip (`head_pose`).

  Returns:
    The clip's motion.
  """
  if style is None:
    style = STYLES[rng.choice(len(STYLES), p=[0.35, 0.4, 0.25])]
  pose = head_pose(rng, num_frames, fps, style, head_motion)
  named = speech_expressions(rng, num_frames, fps)
  named["blink_left"], named["blink_right"] = blinks(rng, num_frames, fps)
  exp = np.zeros((num_frames, len(exp_names)), np.float32)
  for j, name in enumerate(exp_names):
    if name in named:
      exp[:, j] = named[name]
  gaze = gaze_track(rng, num_frames, fps, pose[:, 0].astype(np.float64)).astype(np.float32)
  skin = np.array([0.8, 0.6, 0.5]) if skin is None else np.asarray(skin)
  occ = occluder_tracks(rng, num_frames, fps, skin)
  return ClipMotion(pose=pose, exp_coeffs=exp, gaze=gaze, occluders=occ, style=style)
