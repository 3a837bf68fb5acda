"""The demo's contact sheet: source | driving | prediction rows, enlarged, written atomically."""
import cv2
import numpy as np

from talkingmem.mcnet.demo_outputs import headline, write_contact_sheet


def test_contact_sheet_layout(tmp_path):
  rng = np.random.default_rng(0)
  source = rng.random((64, 64, 3), np.float32)
  driving, pred = rng.random((10, 64, 64, 3), np.float32), rng.random((10, 64, 64, 3), np.float32)
  path = write_contact_sheet(tmp_path / "sheet.png", source, driving, pred, rows=4, cell=192)
  image = cv2.imread(str(path))[..., ::-1]
  assert image.shape == (28 + 4 * 192, 3 * 192, 3)
  assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]  # No temporary file left behind.
  # Row 1 (frame 3 of 0, 3, 6, 9) shows the prediction, enlarged 3x with nearest neighbour.
  cell = image[28 + 192:28 + 2 * 192, 2 * 192:]
  np.testing.assert_array_equal(cell[::3, ::3], (pred[3] * 255).round().astype(np.uint8))


def test_headline_compares_the_prediction_with_the_still_source():
  line = headline({"l1": 0.03, "l1_deformed_source": 0.035, "l1_source": 0.05, "l1_disoccluded": 0.08,
                   "l1_source_disoccluded": 0.17})
  assert line == ("held-out L1 0.0300 (deformed source 0.0350, still source 0.0500: 0.60x); "
                  "disoccluded pixels 0.0800 (still source 0.1700)")
  assert "disoccluded" not in headline({"l1": 0.03, "l1_deformed_source": 0.035, "l1_source": 0.05,
                                        "l1_disoccluded": float("nan")})
  assert headline({"l1": 0.03}) is None
