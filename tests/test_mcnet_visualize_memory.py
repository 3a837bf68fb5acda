"""Memory pictures: one heatmap per channel, in a grid of the expected size."""
import cv2
import numpy as np
import pytest
import skimage.data

from talkingmem.mcnet import animate
from talkingmem.mcnet.config import tiny_model_config
from talkingmem.mcnet.tools import visualize_memory as vm


@pytest.fixture(scope="module")
def loaded():
  config = tiny_model_config(32)  # memory: 16 channels of 8x8
  return animate.from_variables(config, animate.random_variables(config))


def test_heatmaps_are_normalised_per_channel():
  maps = np.stack([np.arange(16.0).reshape(4, 4), 100 + 0.01 * np.arange(16.0).reshape(4, 4)], -1)
  tiles = vm.channel_heatmaps(maps, cell=8)
  assert tiles.shape == (2, 8, 8, 3) and tiles.dtype == np.uint8
  # Both channels span the whole colormap, whatever their own range.
  np.testing.assert_array_equal(tiles[0], tiles[1])


def test_writes_meta_and_conditioned_memory_grid(loaded, tmp_path):
  source = tmp_path / "astronaut.png"
  cv2.imwrite(str(source), skimage.data.astronaut()[..., ::-1])
  columns, cell, pad = 6, 10, 2
  out = tmp_path / "grid.png"
  vm.write_memory_figure(loaded, out, str(source), columns=columns, cell=cell, pad=pad)
  image = cv2.imread(str(out))
  rows = -(-16 // columns)
  grid = (pad + rows * (cell + pad), pad + columns * (cell + pad))
  assert image.shape[:2] == vm.figure_size(16, 2, columns, cell, pad)
  assert image.shape[:2] == (2 * (grid[0] + vm.LABEL_HEIGHT) + vm.PANEL_GAP, grid[1])
  # The conditioned memory differs from the meta-memory it is made from.
  second = grid[0] + 2 * vm.LABEL_HEIGHT + vm.PANEL_GAP
  assert not np.array_equal(image[vm.LABEL_HEIGHT:grid[0] + vm.LABEL_HEIGHT], image[second:])

  only_meta = tmp_path / "meta.png"
  vm.write_memory_figure(loaded, only_meta, columns=columns, cell=cell, pad=pad)
  assert cv2.imread(str(only_meta)).shape[:2] == vm.figure_size(16, 1, columns, cell, pad)


def test_model_without_memory_is_refused():
  with pytest.raises(ValueError, match="no memory unit"):
    vm.meta_memory({"params": {"generator": {}}})
