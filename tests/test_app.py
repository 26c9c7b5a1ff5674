"""The scene editor app: click picking, wireframes, edit actions and the page in headless Chromium.

The browser test starts the app on a free port with a tiny checkpoint (`editing_fixtures`), clicks
an object on the frame, moves it, renders, checks the rendered image differs from the source,
renders a motion (a trajectory) and checks the page plays it (a <video> whose MP4 the browser
loads and decodes), and that a refused edit shows the editing API's message. Screenshots go to the test's tmp dir; with
NA_APP_SCREENSHOT=PATH the README's screenshot is also written there (docs/app_screenshot.png).
It skips when no Chromium / chromedriver is installed, except under CI=true, where it must run
(`tests/run.sh` installs Debian's chromium and chromium-driver when it runs as root).
"""
import dataclasses
import io
import os
import shutil
import socket
import time
import urllib.request

import numpy as np
from PIL import Image
import pytest

from neural_assets import app as app_lib
from neural_assets import editing
from neural_assets.editing import draw
from neural_assets.editing import trajectory
from tests import editing_fixtures as fx
from tests import test_editing

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             "/usr/bin/chromium") if p and os.path.exists(p)), None)
CHROMEDRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver")
                     if p and os.path.exists(p)), None)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return fx.make_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny_run")))


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("scenes")
  fx.make_scene().save(str(path / "a.npz"))
  fx.make_scene(centers=test_editing.B_CENTERS, sizes=test_editing.B_SIZES,
                frame=1).save(str(path / "b.npz"))
  return str(path)


@pytest.fixture(scope="module")
def editor(workdir, scenes_dir):
  return app_lib.make_editor(workdir, scenes_dir)


def _centre(edit, k):
  """(u, v) of the centre of object k's projected 2D box."""
  y0, x0, y1, x1 = edit.target_boxes_2d()[k]
  return (x0 + x1) / 2, (y0 + y1) / 2


# ------------------------------------------------------------------------------------------------
# Geometry of the page, without a browser.


def test_pick_object_takes_the_box_under_the_click():
  edit = editing.as_edit(fx.make_scene())
  boxes = edit.target_boxes_2d()
  for k in range(4):
    u, v = _centre(edit, k)
    inside = [j for j in range(4) if boxes[j, 1] <= u <= boxes[j, 3] and
              boxes[j, 0] <= v <= boxes[j, 2]]
    depth = edit.target_corners()[..., 2].mean(-1)
    assert draw.pick_object(edit, u, v) == min(inside, key=lambda j: depth[j])
  # Outside every box: the nearest box centre.
  u, v = 0.02, 0.98
  centres = np.array([_centre(edit, k) for k in range(4)])
  want = int(np.argmin(np.hypot(centres[:, 0] - u, centres[:, 1] - v)))
  assert draw.pick_object(edit, u, v) == want
  # A removed object is never picked.
  removed = editing.remove(edit, want)
  assert draw.pick_object(removed, u, v) != want
  assert draw.pick_object(editing.Edit(scenes=edit.scenes, assets=(), world_to_camera=
                                       edit.world_to_camera, intrinsics=edit.intrinsics),
                          0.5, 0.5) is None


def test_wireframes_follow_the_projected_corners():
  scene = fx.make_scene()
  edit = editing.translate(scene, 0, (0.2, 0.0, 0.0), frame="camera")
  picture = draw.draw_wireframes(scene.image, edit, selected=None, min_width=160)
  factor = 160 // fx.RESOLUTION
  assert picture.shape == (fx.RESOLUTION * factor, fx.RESOLUTION * factor, 3)
  # Away from the lines the picture is the nearest-upscaled source.
  np.testing.assert_array_equal(draw.upscaled(scene.image, 160)[::factor, ::factor],
                                scene.image)
  # Each box's far (back-face) corners -- not covered by other labels -- are in its colour.
  uvd = edit.target_corners()
  for k in range(4):
    far = int(np.argmax(uvd[k, :, 2]))
    x = int(np.clip(uvd[k, far, 0] * picture.shape[1], 0, picture.shape[1] - 1))
    y = int(np.clip(uvd[k, far, 1] * picture.shape[0], 0, picture.shape[0] - 1))
    patch = picture[max(0, y - 1):y + 2, max(0, x - 1):x + 2].reshape(-1, 3)
    assert any((p == draw.PALETTE[k]).all() for p in patch), k
  # A removed object's box is not drawn: its colour disappears.
  gone = draw.draw_wireframes(scene.image, editing.remove(edit, 2), min_width=160)
  assert not np.any(np.all(gone == draw.PALETTE[2], axis=-1))
  assert np.any(np.all(picture == draw.PALETTE[2], axis=-1))
  # An object forced behind the camera is drawn (where in front) in red, the rest not at all.
  forced = editing.translate(scene, 1, (0.0, 0.0, 2.0), allow_invalid=True)
  forced = editing.rescale(forced, 1, 30.0, allow_invalid=True)
  assert not forced.active()[1]
  assert not np.any(np.all(draw.draw_wireframes(scene.image, forced, min_width=160)
                           == draw.PALETTE[1], axis=-1))


def test_editor_actions_undo_reset_and_files(editor):
  session = editor.start("a")
  assert session.selected == 0 and len(session.history) == 1
  # Clicking object 1's box centre on the shown (upscaled) frame selects it.
  shown = editor.wireframes(session)
  u, v = _centre(session.edit, 1)
  session = editor.click(session, u * shown.shape[1], v * shown.shape[0], shown.shape[1],
                         shown.shape[0])
  assert session.selected == 1, session.message
  moved = editor.apply(session, lambda e: editing.translate(e, 1, (0.3, 0.0, 0.0), "camera"))
  assert len(moved.history) == 2 and moved.message.startswith("Applied: translate 1")
  np.testing.assert_allclose(moved.edit.assets[1].center,
                             editing.translate(session.edit, 1, (0.3, 0, 0), "camera")
                             .assets[1].center)
  refused = editor.apply(moved, lambda e: editing.translate(e, 1, (0.0, 0.0, -50.0)))
  assert refused.history == moved.history
  assert "behind the camera" in refused.message and app_lib.FORCE_HINT in refused.message
  assert "allow_invalid" not in refused.message
  dup = editor.apply(moved, lambda e: editing.duplicate(e, 1, (0.0, 0.2, 0.0), "camera"))
  assert dup.selected == 4 and len(dup.edit.assets) == 5
  no_object = editor.apply(dataclasses.replace(dup, selected=None),
                           lambda e: editing.remove(e, 0))
  assert "Select an object" in no_object.message and no_object.history == dup.history
  undone = editor.undo(dup)
  assert undone.history == moved.history and undone.selected == 1
  assert editor.undo(editor.start("a")).message == "Nothing to undo."
  assert editor.reset(dup).history == editor.start("a").history
  # The downloaded edit is the session's edit, and the edit CLI's loader reads it.
  loaded = editing.load_scene_or_edit(editor.save_edit(dup))
  np.testing.assert_allclose(loaded.target_corners(), dup.edit.target_corners(), atol=1e-6)
  assert loaded.steps == dup.edit.steps


def test_editor_render_matches_the_api(editor):
  session = editor.apply(editor.start("a"), lambda e: editing.rotate(e, 1, yaw=90))
  image, path = editor.render(session, num_steps=2, guidance_scale=2.0, seed=0)
  want = editing.render(editor.bundle, session.edit.source, session.edit, num_steps=2,
                        guidance_scale=2.0, seed=0)[0, 0]
  np.testing.assert_array_equal(image, want)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), want)
  with pytest.raises(editing.EditError, match="Guidance scale"):
    editor.render(session, 2, float("nan"), 0)
  editor.warm_up()  # The start-up compile: one render of the first scene at the config's steps.


def test_editor_render_motion_matches_the_library(editor):
  session = editor.apply(editor.start("a"), lambda e: editing.translate(e, 1, (0.2, 0, 0),
                                                                          "camera"))
  seen = []
  frames, mp4, gif = editor.render_motion(session, "rotate 1 yaw=0:90:3", 2, 2.0, 1, fps=6.0,
                                          progress=lambda f, d: seen.append((f, d)))
  want = trajectory.render_frames(editor.bundle, trajectory.build_trajectory(
      session.edit, "rotate 1 yaw=0:90:3"), seed=1, guidance_scale=2.0, num_steps=2)
  np.testing.assert_array_equal(frames, want)
  # The videos are upscaled as the shown stills: 16 px -> 384 px.
  shown = draw.upscaled(want[0], app_lib.DISPLAY_WIDTH).shape
  assert trajectory.read_video(mp4).shape == (3,) + shown
  assert trajectory.read_video(gif).shape == (3,) + shown
  assert seen[-1] == (1.0, "3/3 frames rendered")
  with pytest.raises(trajectory.TrajectoryError, match="give the frame count"):
    editor.render_motion(session, "rotate 1 yaw=0:90", 2, 2.0, 0)
  with pytest.raises(editing.EditError, match="Frames per second"):
    editor.render_motion(session, "rotate 1 yaw=0:90:3", 2, 2.0, 0, fps=float("nan"))
  # insert in a motion takes the object from the donor scene.
  frames, _, _ = editor.render_motion(session, "insert 0 x=0:0.2:2 frame=camera", 1, 2.0, 0,
                                      donor="b")
  assert frames.shape == (2, fx.RESOLUTION, fx.RESOLUTION, 3)


def test_scenes_default_to_synthetic_ones_and_fit_the_slots(editor, tmp_path):
  scenes = app_lib.load_scenes(None, editor.bundle, num_synthetic=1)
  (edit,) = scenes.values()
  assert edit.source.image.shape == (fx.RESOLUTION, fx.RESOLUTION, 3)
  assert 1 <= len(edit.assets) <= fx.MAX_OBJECTS
  many = fx.make_scene(centers=[[x, 0.0, 6.0] for x in np.linspace(-1.2, 1.2, 8)],
                       sizes=[[0.2 + 0.02 * i, 0.3, 0.3] for i in range(8)])
  assert many.num_objects == 8
  many.save(str(tmp_path / "many.npz"))
  fitted = app_lib.load_scenes(str(tmp_path), editor.bundle)["many"]
  assert len(fitted.assets) == fx.MAX_OBJECTS
  # The two smallest (narrowest) objects are the ones left out.
  assert [a.instance_id for a in fitted.assets] == list(range(2, 8))
  with pytest.raises(FileNotFoundError, match="not a directory"):
    app_lib.load_scenes(str(tmp_path / "missing"), editor.bundle)


def test_cli_without_a_checkpoint_says_how_to_get_one(tmp_path, capsys):
  with pytest.raises(SystemExit) as info:
    app_lib.main(["--checkpoint", str(tmp_path / "missing")])
  assert info.value.code == 2
  err = capsys.readouterr().err
  assert "No checkpoint" in err and "bash demo.sh" in err
  with pytest.raises(SystemExit):
    app_lib.main(["--checkpoint", str(tmp_path), "--port", "70000"])
  assert "--port" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# The page in a real browser.


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture()
def browser(tmp_path):
  if CHROMIUM is None or CHROMEDRIVER is None:
    reason = (f"no headless browser: chromium={CHROMIUM}, chromedriver={CHROMEDRIVER} (install "
              "Debian's chromium and chromium-driver; tests/run.sh does as root)")
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail(reason + "; under CI=true this test must run")
    pytest.skip(reason)
  from selenium import webdriver  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.chrome.options import Options  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  options = Options()
  options.binary_location = CHROMIUM
  for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,1500", f"--user-data-dir={tmp_path / 'chromium_profile'}"):
    options.add_argument(arg)
  options.add_experimental_option("prefs", {
      "download.default_directory": str(tmp_path / "downloads"),
      "download.prompt_for_download": False})
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  driver.execute_cdp_cmd("Browser.setDownloadBehavior", {
      "behavior": "allow", "downloadPath": str(tmp_path / "downloads")})
  yield driver
  driver.quit()


def _fetch_image(src: str) -> np.ndarray:
  with urllib.request.urlopen(src, timeout=30) as response:
    return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))


def _downloaded(directory, suffix, timeout=60.0):
  """The path of the file with `suffix` that appears in `directory` (complete downloads only)."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    done = [n for n in (os.listdir(directory) if os.path.isdir(directory) else [])
            if n.endswith(suffix)]
    if done:
      return os.path.join(directory, done[0])
    time.sleep(0.2)
  raise AssertionError(f"No *{suffix} downloaded to {directory} within {timeout} s.")


def test_app_in_browser(editor, browser, tmp_path):
  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By
  from selenium.webdriver.common.keys import Keys
  from selenium.webdriver.support.ui import WebDriverWait
  # pylint: enable=g-import-not-at-top
  app, url, share_url = app_lib.launch(editor, port=_free_port(), prevent_thread_lock=True,
                                       quiet=True)
  try:
    assert url.startswith("http://127.0.0.1:") and share_url is None
    wait = WebDriverWait(browser, 120)
    browser.get(url)

    def text(elem_id):
      return browser.find_element(By.ID, elem_id).text

    def set_number(elem_id, value):
      field = browser.find_element(By.CSS_SELECTOR, f"#{elem_id} input")
      field.send_keys(Keys.CONTROL, "a")
      field.send_keys(str(value))

    frame = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#wireframes img"))
    browser.save_screenshot(str(tmp_path / "0_loaded.png"))
    source = _fetch_image(frame.get_attribute("src"))
    start = editor.start("a")
    np.testing.assert_array_equal(source, editor.wireframes(start))

    # Click object 1 on the frame (its projected box centre, in displayed pixels).
    u, v = _centre(start.edit, 1)
    rect = frame.rect
    ActionChains(browser).move_to_element_with_offset(
        frame, int(u * rect["width"] - rect["width"] / 2),
        int(v * rect["height"] - rect["height"] / 2)).click().perform()
    wait.until(lambda d: "Selected object 1." in text("message"))
    assert "1: instance 1" in browser.find_element(By.CSS_SELECTOR, "#object input").get_attribute(
        "value")

    # Move it right (camera frame): the wireframes change at once, without the model.
    set_number("move_x", 0.4)
    browser.find_element(By.ID, "move").click()
    wait.until(lambda d: "Applied: translate 1 by [0.4, 0.0, 0.0] (camera)" in text("message"))
    moved = editor.apply(editor.select(start, 1),
                         lambda e: editing.translate(e, 1, (0.4, 0.0, 0.0), "camera"))
    frame_src = browser.find_element(By.CSS_SELECTOR, "#wireframes img").get_attribute("src")
    np.testing.assert_array_equal(_fetch_image(frame_src), editor.wireframes(moved))
    browser.save_screenshot(str(tmp_path / "1_moved.png"))

    # Render: a new image appears, the model's render of the edit, unlike the source.
    set_number("guidance", 2)
    browser.find_element(By.ID, "render_btn").click()
    rendered_img = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#render img"))[0]
    wait.until(lambda d: "Rendered:" in text("message"))
    browser.save_screenshot(str(tmp_path / "2_rendered.png"))
    rendered = _fetch_image(rendered_img.get_attribute("src"))
    want, _ = editor.render(moved, 2, 2.0, 0)
    np.testing.assert_array_equal(rendered, draw.upscaled(want, app_lib.DISPLAY_WIDTH))
    shown_source = draw.upscaled(start.edit.source.image, app_lib.DISPLAY_WIDTH)
    assert rendered.shape == shown_source.shape
    assert np.abs(rendered.astype(int) - shown_source.astype(int)).mean() > 5.0

    # Render motion: a progress bar, then an inline player whose MP4 the browser decodes.
    spec_box = browser.find_element(By.CSS_SELECTOR, "#motion_spec textarea")
    spec_box.send_keys(Keys.CONTROL, "a")
    spec_box.send_keys("rotate 1 yaw=0:90:3")
    browser.find_element(By.ID, "motion_btn").click()
    wait.until(lambda d: "Rendered motion:" in text("message"))
    video = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#motion video"))[0]
    src = video.get_attribute("src")
    assert src and src.endswith(".mp4"), src
    # Playable: the browser has read the stream's metadata and a frame (readyState >= 2,
    # HAVE_CURRENT_DATA) with the video's size and duration, and reports no media error.
    wait.until(lambda d: d.execute_script(
        "const v = document.querySelector('#motion video'); return v.readyState >= 2;"))
    state = browser.execute_script(
        "const v = document.querySelector('#motion video'); return [v.videoWidth, "
        "v.videoHeight, v.duration, v.error === null];")
    browser.save_screenshot(str(tmp_path / "2b_motion.png"))
    shown_size = draw.upscaled(want, app_lib.DISPLAY_WIDTH).shape
    assert state[:2] == [shown_size[1], shown_size[0]] and state[3], state
    assert state[2] == pytest.approx(3 / trajectory.DEFAULT_FPS, abs=0.05), state
    with urllib.request.urlopen(src, timeout=30) as response:
      (tmp_path / "motion.mp4").write_bytes(response.read())
    assert trajectory.read_video(str(tmp_path / "motion.mp4")).shape == (3,) + shown_size
    assert "3 frames" in text("message")

    # A move behind the camera is refused, with the API's message in the page.
    set_number("move_x", 0)
    set_number("move_z", -50)
    browser.find_element(By.ID, "move").click()
    wait.until(lambda d: "refused" in text("message"))
    message = text("message")
    assert "object 1 would be behind the camera" in message, message
    assert "Apply even if invalid" in message and "allow_invalid" not in message, message
    assert "1. translate 1 by [0.4, 0.0, 0.0] (camera)" == browser.find_element(
        By.CSS_SELECTOR, "#steps textarea").get_attribute("value")
    browser.save_screenshot(str(tmp_path / "3_refused.png"))

    # The downloads: the render as PNG, the edit (the move, not the refused one) as .npz that the
    # edit CLI reads.
    downloads = str(tmp_path / "downloads")
    browser.find_element(By.ID, "download_png").click()
    np.testing.assert_array_equal(np.asarray(Image.open(_downloaded(downloads, ".png"))), want)
    browser.find_element(By.ID, "download_npz").click()
    loaded = editing.load_scene_or_edit(_downloaded(downloads, ".npz"))
    assert loaded.steps == moved.edit.steps
    np.testing.assert_allclose(loaded.target_corners(), moved.edit.target_corners(), atol=1e-6)
    screenshot = os.environ.get("NA_APP_SCREENSHOT")
    if screenshot:
      _write_readme_screenshot(tmp_path / "2_rendered.png", screenshot)
  finally:
    app.close()


def _write_readme_screenshot(full_png, out_path):
  """The top of the page (title to message), at 2/3 size and palette-quantised: a small PNG."""
  image = Image.open(full_png).convert("RGB")
  image = image.crop((0, 0, image.width, min(image.height, 720)))
  image = image.resize((image.width * 2 // 3, image.height * 2 // 3), Image.Resampling.LANCZOS)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out_path, optimize=True)
