"""Test-wide set-up: 8 simulated CPU devices (for sharding tests), float32 matmuls, fixture paths."""
import os
import pathlib

# Must happen before jax is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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
