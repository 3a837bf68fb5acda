"""The browser app through gradio's client API: an animation comes back, bad input is a message."""
import pytest

from data_pipelines import video_io
import app_fixtures  # tests/ is on sys.path (pytest, script).

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  inputs = app_fixtures.make_inputs(tmp_path_factory.mktemp("app"))
  url, close, temp_dir = app_fixtures.start_app(inputs.checkpoint)
  yield inputs, gradio_client.Client(url, verbose=False), temp_dir
  close()


def _animate(client, inputs, photo):
  return client.predict(gradio_client.handle_file(str(photo)),
                        gradio_client.handle_file(str(inputs.driving)),
                        str(inputs.checkpoint), "relative", False, "first", 0, True, True, api_name="/animate")


def test_animate_returns_a_video_at_the_photo_size(served):
  inputs, client, _ = served
  result, side, status = _animate(client, inputs, inputs.photo)
  info = video_io.video_info(result)
  assert info["frames"] == app_fixtures.NUM_FRAMES and info["size"] == (512, 512)  # pasted back
  assert video_io.video_info(side)["size"] == (512, 3 * 512)
  assert "6 frames" in status


def test_errors_are_messages_and_the_app_keeps_serving(served):
  inputs, client, _ = served
  with pytest.raises(gradio_client.exceptions.AppError, match="no face found"):
    _animate(client, inputs, inputs.no_face)
  with pytest.raises(gradio_client.exceptions.AppError, match="not in the list of choices"):
    client.predict(gradio_client.handle_file(str(inputs.photo)),
                   gradio_client.handle_file(str(inputs.driving)), "/etc/passwd", "relative",
                   False, "first", 0, True, True, api_name="/animate")
  assert _animate(client, inputs, inputs.photo)[0].endswith(".mp4")  # still serving


def test_requests_read_only_uploads_inside_the_app_folder(served, tmp_path):
  from talkingmem.app import core
  _, _, temp_dir = served
  context = core.AppContext(temp_dir=temp_dir, max_upload_mb=1)
  with pytest.raises(core.AppInputError, match="uploaded through the page"):
    context.upload("/etc/passwd", "photo")
  big = temp_dir / "uploads" / "big.png"
  big.write_bytes(b"\0" * (2 * 2**20))
  with pytest.raises(core.AppInputError, match="larger than 1 MB"):
    context.upload(str(big), "photo")
  assert context.request_dir().is_relative_to(temp_dir)
