"""MCNet = keypoint detector + generator, built from an ml_collections model config.

Variables: {'params': {'kp_detector': ..., 'generator': ...}, 'batch_stats': {...same keys...}}.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import ml_collections

from talkingmem.mcnet.generator import Generator
from talkingmem.mcnet.keypoints import KPDetector


class MCNet(nn.Module):
  """Image-driven talking heads with a global meta-memory (Hong & Xu, ICCV 2023)."""
  config: ml_collections.ConfigDict

  def setup(self):
    c = self.config
    self.kp_detector = KPDetector(num_kp=c.num_kp, estimate_jacobian=c.estimate_jacobian,
                                  **c.kp_detector.to_dict())
    self.generator = Generator(num_kp=c.num_kp, dense_motion=c.dense_motion.to_dict(),
                               use_memory=c.use_memory, memory=c.memory.to_dict(),
                               conv_method=c.get("conv_method", "auto"), **c.generator.to_dict())

  def detect(self, image: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    """Keypoints of images (B, H, W, 3) in [0, 1]."""
    return self.kp_detector(image, train)

  def generate(self, source: jax.Array, kp_source: dict, kp_driving: dict, train: bool = False,
               noise: Sequence[jax.Array] | jax.Array | None = None) -> dict[str, Any]:
    """Animates `source` so its keypoints move to `kp_driving`."""
    return self.generator(source, kp_driving, kp_source, train, noise)

  def __call__(self, source: jax.Array, driving: jax.Array, train: bool = False,
               noise: Sequence[jax.Array] | jax.Array | None = None) -> dict[str, Any]:
    """Reconstruction: keypoints from both frames, then generation (the training forward)."""
    kp_source = self.detect(source, train)
    kp_driving = self.detect(driving, train)
    out = self.generate(source, kp_source, kp_driving, train, noise)
    out.update(kp_source=kp_source, kp_driving=kp_driving)
    return out


def kp_detector_only(config: ml_collections.ConfigDict) -> KPDetector:
  """A standalone keypoint detector with the same variables as MCNet's `kp_detector` subtree."""
  return KPDetector(num_kp=config.num_kp, estimate_jacobian=config.estimate_jacobian,
                    **config.kp_detector.to_dict())
