"""Shared by the app tests: a tiny random MCNet checkpoint, the astronaut, a short driving video, and a
running app on a free localhost port."""
import pathlib
import socket
import tempfile
import types

import cv2
import numpy as np
import skimage.data

from data_pipelines import video_io

NUM_FRAMES, FPS = 6, 10


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def make_inputs(root: pathlib.Path) -> types.SimpleNamespace:
  from talkingmem.mcnet import animate, official  # pylint: disable=g-import-not-at-top
  from talkingmem.mcnet.config import tiny_model_config  # pylint: disable=g-import-not-at-top
  config = tiny_model_config(32)
  checkpoint = root / "tiny_official.npz"
  official.save_npz(official.to_official(animate.random_variables(config), config), checkpoint)
  photo = root / "astronaut.png"
  cv2.imwrite(str(photo), skimage.data.astronaut()[..., ::-1])
  face = cv2.resize(skimage.data.astronaut()[0:300, 80:380], (160, 160), interpolation=cv2.INTER_AREA)
  driving = root / "driving.mp4"
  video_io.write_video(driving, np.stack([np.roll(face, 3 * t, axis=1) for t in range(NUM_FRAMES)]), fps=FPS)
  no_face = root / "no_face.png"
  cv2.imwrite(str(no_face), np.full((128, 128, 3), 127, np.uint8))
  return types.SimpleNamespace(checkpoint=checkpoint, photo=photo, driving=driving, no_face=no_face)


def start_app(checkpoint: pathlib.Path):
  """(url, close) of the app serving `checkpoint`, started in this process."""
  from talkingmem.app import core  # pylint: disable=g-import-not-at-top
  temp_dir = pathlib.Path(tempfile.mkdtemp(prefix="talkingmem-app-test-"))
  core.prepare_environment(temp_dir)
  context = core.AppContext(temp_dir=temp_dir, models=(str(checkpoint),))
  blocks = core.launch(context, free_port(), block=False)
  return blocks.local_url, blocks.close, temp_dir
