"""Ground-truth disocclusion masks from rendered surface maps."""
import numpy as np

from data_pipelines.synthetic import disocclusion
from data_pipelines.synthetic.engine import face_model as face_model_lib
from data_pipelines.synthetic import video_set


def test_mask_from_surface_maps():
  source = np.array([[-1, 0, 1], [-1, 2, 2]], np.int32)
  driving = np.array([[0, 3, -1], [-1, 2, 4]], np.int32)
  mask = disocclusion.disocclusion_mask(source, driving)
  # Triangles 3 and 4 are not seen in the source; (0, 2) shows background the source's triangle 1 covers.
  np.testing.assert_array_equal(mask, [[False, True, True], [False, False, True]])
  assert not disocclusion.disocclusion_mask(driving, driving).any()


def test_rendered_clip_has_surface_maps():
  model = face_model_lib.build_face_model()
  frames, meta = video_set.generate_clip(model, seed=0, identity_index=0, clip_index=0, frames_per_clip=8,
                                         size=32, fps=25.0)
  surface = meta["surface"]
  assert surface.shape == frames.shape[:3] and surface.dtype == np.int32
  assert (surface >= 0).mean() > 0.05  # The head is there.
  visible = meta["visible_triangles"]
  assert visible.shape[0] == len(frames) and visible.dtype == bool
  # Every triangle in a frame's surface map is in its visible set, so a frame disoccludes nothing of itself.
  for t in range(len(frames)):
    assert visible[t][surface[t][surface[t] >= 0]].all()
  masks = disocclusion.clip_masks(surface, 0, visible)
  assert not masks[0].any() and masks.shape == surface.shape
