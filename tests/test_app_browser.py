"""The app in a real browser (headless Chromium via selenium): upload, Animate, a playable mp4; a no-face
photo gives a message in the page. Skipped, with the reason, where Chromium is not installed.

TALKINGMEM_APP_SCREENSHOT=/tmp/app.png keeps a screenshot of the page after the animation.
"""
import os
import shutil
import tempfile
import time

import pytest

import app_fixtures  # tests/ is on sys.path (pytest, script).

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="headless Chromium not installed (apt-get install chromium "
    "chromium-driver; `make test` does it when root)")
webdriver = pytest.importorskip("selenium.webdriver")
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
  from selenium.webdriver.chrome.service import Service
  inputs = app_fixtures.make_inputs(tmp_path_factory.mktemp("browser"))
  url, close, _ = app_fixtures.start_app(inputs.checkpoint)
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  profile = tempfile.mkdtemp(prefix="chromium-profile-")
  for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1400,1800", f"--user-data-dir={profile}"):
    options.add_argument(arg)
  driver = webdriver.Chrome(options=options, service=Service(DRIVER))
  driver.get(url)
  yield driver, inputs
  driver.quit()
  close()
  shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, condition, what: str, timeout: float = TIMEOUT_S):
  start = time.monotonic()
  while time.monotonic() - start < timeout:
    value = driver.execute_script(condition)
    if value:
      return value
    time.sleep(0.5)
  raise AssertionError(f"timed out waiting for {what}")


def _upload_and_animate(driver, photo, driving=None):
  from selenium.webdriver.common.by import By
  _wait(driver, "return document.querySelector('#photo input[type=file]')", "the photo upload")
  driver.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(str(photo))
  if driving is not None:
    driver.find_element(By.CSS_SELECTOR, "#driving input[type=file]").send_keys(str(driving))
    _wait(driver, "return document.querySelector('#driving video')", "the driving video preview")
  _wait(driver, "return document.querySelector('#photo img')", "the photo preview")
  driver.find_element(By.CSS_SELECTOR, "#animate").click()


def test_upload_animate_and_play(browser):
  driver, inputs = browser
  _upload_and_animate(driver, inputs.photo, inputs.driving)
  src = _wait(driver, "const v = document.querySelector('#result video'); return v && v.src", "the result")
  assert ".mp4" in src
  # Playable: the browser decoded its size and first frame (H.264 in an mp4).
  size = _wait(driver, "const v = document.querySelector('#result video'); "
                       "return v.readyState >= 2 && [v.videoWidth, v.videoHeight, v.duration]", "a decoded frame")
  assert size[:2] == [512, 512] and size[2] > 0
  status = driver.execute_script("return document.querySelector('#status').innerText")
  assert "6 frames" in status
  if os.environ.get("TALKINGMEM_APP_SCREENSHOT"):
    driver.save_screenshot(os.environ["TALKINGMEM_APP_SCREENSHOT"])


def test_no_face_is_a_message_in_the_page(browser):
  driver, inputs = browser
  driver.refresh()
  _upload_and_animate(driver, inputs.no_face, inputs.driving)
  _wait(driver, "return document.body.innerText.includes('no face found')", "the error message", 120)
  assert "Traceback" not in driver.execute_script("return document.body.innerText")
