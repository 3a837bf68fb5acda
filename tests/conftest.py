"""Test-wide set-up: 8 simulated CPU devices (for sharding tests), float32 matmuls, fixture paths."""
import os
import pathlib

# Must happen before jax is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Identical programs compiled by several tests (and subprocesses) are compiled once.
_CACHE = pathlib.Path(__file__).resolve().parents[1] / ".jax_cache"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def official_fixture_dir() -> pathlib.Path:
  path = SHARED / "fixtures" / "mcnet_official"
  if not (path / "io.npz").exists():
    pytest.fail(f"official fixtures missing at {path}; CI clones the repo with shared/ beside it")
  return path


class TinyMCNet:
  """One tiny MCNet (64x64, 10 keypoints), initialised once per session with jitted calls."""

  def __init__(self):
    import jax.numpy as jnp
    import numpy as np
    from talkingmem.mcnet.config import tiny_model_config
    from talkingmem.mcnet.model import MCNet
    self.config = tiny_model_config(64)
    self.model = MCNet(self.config)
    rng = np.random.default_rng(0)
    self.source = jnp.asarray(rng.uniform(size=(2, 64, 64, 3)), jnp.float32)
    self.driving = jnp.asarray(rng.uniform(size=(2, 64, 64, 3)), jnp.float32)
    self.variables = jax.jit(self.model.init)(jax.random.PRNGKey(0), self.source, self.driving)
    self.apply = jax.jit(self.model.apply, static_argnames=("train", "method", "mutable"))


@pytest.fixture(scope="session")
def tiny_mcnet() -> TinyMCNet:
  return TinyMCNet()
