"""Random LPIPS backbone weights in torchvision's layout, for tests that need no real weight files."""
import numpy as np

from talkingmem.metrics import lpips


def torchvision_state_dict(net: str, seed: int = 0) -> dict[str, np.ndarray]:
  """Random He-scaled weights in torchvision layout, plus classifier keys."""
  rng = np.random.default_rng(seed)
  sd = {"classifier.1.weight": np.zeros((4, 4), np.float32)}
  for op in lpips._ARCH[net]:  # pylint: disable=protected-access
    if op[0] == "conv":
      _, idx, cin, cout, k, _, _ = op
      std = np.sqrt(2.0 / (cin * k * k))
      sd[f"features.{idx}.weight"] = (
          rng.standard_normal((cout, cin, k, k)) * std).astype(np.float32)
      sd[f"features.{idx}.bias"] = (
          rng.standard_normal(cout) * 0.1).astype(np.float32)
  return sd
