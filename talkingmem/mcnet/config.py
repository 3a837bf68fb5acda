"""Default MCNet model configurations (the official vox-256 architecture and a tiny one for tests)."""
from __future__ import annotations

import ml_collections


def model_config(image_size: int = 256) -> ml_collections.ConfigDict:
  """The official vox-256 architecture; every size is a field."""
  m = ml_collections.ConfigDict()
  m.image_size = image_size
  m.num_channels = 3
  m.num_kp = 15
  m.estimate_jacobian = True
  # The keypoint detector and dense motion run at 64x64 whatever the image size (FOMM #14).
  down_scale = 64 / image_size
  m.kp_detector = ml_collections.ConfigDict(dict(
      block_expansion=32, max_features=1024, num_blocks=5, temperature=0.1, scale_factor=down_scale,
      pad=0))
  m.dense_motion = ml_collections.ConfigDict(dict(
      block_expansion=64, max_features=1024, num_blocks=5, scale_factor=down_scale, kp_variance=0.01))
  m.generator = ml_collections.ConfigDict(dict(
      block_expansion=64, max_features=512, num_down_blocks=3, estimate_occlusion_map=True,
      # jax.checkpoint on 'memory' (the unit's calls) and/or 'decoder' (res + up blocks), e.g.
      # remat="memory,decoder"; remat_policy 'nothing' (recompute all) or 'dots' (keep matmul outputs).
      remat="", remat_policy="nothing"))
  m.use_memory = True
  m.memory = ml_collections.ConfigDict(dict(
      memory_channels=512, memory_size=32, style_dim=512, style_hidden=128, num_kernels=4,
      kernel_temperature=34.0, attention_scale=0.25, attention_chunk=None,
      # 'flash': query chunks of attention_chunk (default 1024) with a custom VJP that keeps no
      # (B, HW, S²) probabilities for the backward; same values (tests/test_nn_attention.py).
      attention_impl="plain",
      # Paper Table 4 ablations: layers='first' compensates the deepest level only ("single layer");
      # iscm_keypoints / iscm_features=False drop that input of the implicit scale code.
      layers="all", iscm_keypoints=True, iscm_features=True))
  m.conv_method = "auto"  # per-sample convs: auto (im2col on CPU, grouped elsewhere), grouped, vmap, im2col
  return m


def tiny_model_config(image_size: int = 64) -> ml_collections.ConfigDict:
  """Few channels, for tests and CPU demos."""
  m = model_config(image_size)
  m.num_kp = 10
  m.kp_detector.update(block_expansion=8, max_features=64, num_blocks=4,
                       scale_factor=min(1.0, 32 / image_size))
  m.dense_motion.update(block_expansion=8, max_features=64, num_blocks=4,
                        scale_factor=min(1.0, 32 / image_size))
  m.generator.update(block_expansion=8, max_features=64)
  m.memory.update(memory_channels=16, memory_size=8, style_dim=32, style_hidden=32)
  return m
