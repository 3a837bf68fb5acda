"""MCNet task helpers that need no model."""
import pathlib

import pytest

from talkingmem.synthetic_data import check_synthetic_info


def test_cached_synthetic_data_with_other_settings_is_refused():
  info = {"num_identities": 120, "clips_per_identity": 2, "frames_per_clip": 32, "size": 64,
          "test_fraction": 0.1, "video_format": "mp4", "generation_seconds": 160.0}
  same = {"num_identities": 120, "clips_per_identity": 2, "frames_per_clip": 32, "test_fraction": 0.1,
          "video_format": "mp4"}
  check_synthetic_info(info, dict(same, size=64), pathlib.Path("d"))  # Matching settings pass.
  with pytest.raises(ValueError, match=r"frames_per_clip: on disk 32, config 64.*Delete that folder"):
    check_synthetic_info(info, dict(dict(same, frames_per_clip=64), size=64), pathlib.Path("d"))
  with pytest.raises(ValueError, match="size: on disk 64, config 32"):
    check_synthetic_info(info, dict(same, size=32), pathlib.Path("d"))


def test_a_set_made_before_head_motion_existed_counts_as_head_motion_1():
  old = {"num_identities": 120, "size": 64, "seed": 0}
  check_synthetic_info(old, {"num_identities": 120, "head_motion": 1.0}, pathlib.Path("d"),
                       absent={"head_motion": 1.0})
  with pytest.raises(ValueError, match="head_motion: on disk 1.0, config 2.0"):
    check_synthetic_info(old, {"num_identities": 120, "head_motion": 2.0}, pathlib.Path("d"),
                         absent={"head_motion": 1.0})
  with pytest.raises(ValueError, match="seed: on disk 0, config 1"):
    check_synthetic_info(old, {"seed": 1}, pathlib.Path("d"))
