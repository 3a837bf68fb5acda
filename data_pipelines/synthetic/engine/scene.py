"""Per-clip scene: textured background, torso and neck, lighting.

Backgrounds are textured (never flat) so that a warp of the background — the
classic failure of an animation model that moves the whole frame — is visible.
"""

import dataclasses

import cv2
import numpy as np

BACKGROUND_KINDS = ("stripes", "blobs", "tiles", "noise")


@dataclasses.dataclass(frozen=True)
class Scene:
  background: str  # One of BACKGROUND_KINDS.
  colours: np.ndarray  # (3, 3) sRGB palette of the background.
  clothing: np.ndarray  # (3,) sRGB.
  clothing_stripes: bool
  light_dir: np.ndarray  # (3,) unit vector in camera space, towards the light.
  ambient: float
  diffuse: float
  specular: float
  seed: int


def sample_scene(rng: np.random.Generator) -> Scene:
  light = np.array([rng.uniform(-0.7, 0.7), rng.uniform(0.1, 0.7), 1.0])
  base = rng.uniform(0.15, 0.85, 3)
  colours = np.clip(base[None] + rng.normal(0, 0.18, (3, 3)), 0.03, 0.97)
  return Scene(
      background=BACKGROUND_KINDS[rng.integers(len(BACKGROUND_KINDS))],
      colours=colours, clothing=rng.uniform(0.05, 0.8, 3),
      clothing_stripes=bool(rng.random() < 0.3),
      light_dir=light / np.linalg.norm(light), ambient=float(rng.uniform(0.28, 0.42)),
      diffuse=float(rng.uniform(0.6, 0.8)), specular=float(rng.uniform(0.03, 0.12)),
      seed=int(rng.integers(2 ** 31)))


def background_image(scene: Scene, height: int, width: int) -> np.ndarray:
  """(H, W, 3) float32 sRGB background; features scale with the image size."""
  rng = np.random.default_rng(scene.seed)
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  x, y = x / width, y / height
  c0, c1, c2 = (c.astype(np.float32) for c in scene.colours)
  angle = rng.uniform(0, np.pi)
  ramp = np.clip(0.5 + (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle), 0, 1)[..., None]
  img = c0 * (1 - ramp) + c1 * ramp
  if scene.background == "stripes":
    period = rng.uniform(0.06, 0.2)
    a = rng.uniform(0, np.pi)
    phase = ((x * np.cos(a) + y * np.sin(a)) / period) % 1.0
    band = (phase < rng.uniform(0.3, 0.6)).astype(np.float32)
    band = cv2.GaussianBlur(band, (0, 0), max(width / 256, 0.5))[..., None]
    img = img * (1 - 0.5 * band) + c2 * 0.5 * band
  elif scene.background == "blobs":
    for _ in range(int(rng.integers(6, 14))):
      cx, cy = rng.uniform(0, 1, 2)
      r = rng.uniform(0.04, 0.18)
      col = np.clip(c2 + rng.normal(0, 0.15, 3), 0, 1).astype(np.float32)
      blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
      img = img * (1 - 0.7 * blob) + col * 0.7 * blob
  elif scene.background == "tiles":
    nx, ny = int(rng.integers(3, 8)), int(rng.integers(3, 8))
    jitter = rng.uniform(-0.12, 0.12, (ny, nx)).astype(np.float32)
    ix = np.minimum((x * nx).astype(int), nx - 1)
    iy = np.minimum((y * ny).astype(int), ny - 1)
    img = img * (1 + jitter[iy, ix])[..., None]
    grout = ((np.abs((x * nx) % 1 - 0.5) > 0.47) | (np.abs((y * ny) % 1 - 0.5) > 0.47))
    img = np.where(grout[..., None], c2 * 0.6, img)
  noise = rng.standard_normal((height, width)).astype(np.float32)
  noise = cv2.GaussianBlur(noise, (0, 0), max(width / 64, 0.5))
  noise /= noise.std() + 1e-6
  img = img * (1 + 0.06 * noise[..., None])
  return np.clip(img, 0, 1).astype(np.float32)


def draw_body(canvas: np.ndarray, scene: Scene, skin: np.ndarray, neck_top: np.ndarray,
              centre_x: float, head_px: float) -> None:
  """Draws shoulders and neck in place (both sit behind the head).

  Args:
    canvas: (H, W, 3) float32 image, modified in place.
    scene: clothing colour and light.
    skin: (3,) neck colour.
    neck_top: (2,) pixel position where the neck meets the head.
    centre_x: horizontal pixel position of the body's centre line.
    head_px: the head's size in pixels (the body scales with it).
  """
  h, w = canvas.shape[:2]
  shift = 4
  k = 1 << shift
  top_y = neck_top[1] + 0.4 * head_px
  body = np.zeros((h, w), np.uint8)
  cv2.ellipse(body, (int(centre_x * k), int((top_y + 0.42 * head_px) * k)),
              (int(0.95 * head_px * k), int(0.45 * head_px * k)), 0, 0, 360, 255, -1,
              cv2.LINE_8, shift)
  ys, xs = np.nonzero(body)  # Colour only the covered pixels.
  lit = 1.0 - 0.25 * np.clip((xs - centre_x) / head_px * -scene.light_dir[0], -1, 1)
  lit = lit - 0.15 * np.clip((ys - top_y) / head_px, 0, 1)
  if scene.clothing_stripes:
    lit = lit * (1 - 0.35 * ((ys / (0.09 * head_px)) % 1.0 < 0.5))
  canvas[ys, xs] = scene.clothing[None].astype(np.float32) * lit[:, None]

  neck = np.zeros((h, w), np.uint8)
  half_top, half_bot = 0.22 * head_px, 0.27 * head_px
  bottom = top_y + 0.12 * head_px
  pts = np.array([[neck_top[0] - half_top, neck_top[1] - 0.1 * head_px],
                  [neck_top[0] + half_top, neck_top[1] - 0.1 * head_px],
                  [centre_x + half_bot, top_y], [centre_x, bottom], [centre_x - half_bot, top_y]])
  cv2.fillPoly(neck, [np.round(pts * k).astype(np.int32)], 255, cv2.LINE_8, shift)
  ys, xs = np.nonzero(neck)
  shade = 0.55 + 0.3 * np.clip((ys - neck_top[1]) / (0.6 * head_px), 0, 1)
  canvas[ys, xs] = skin[None].astype(np.float32) * shade[:, None]
