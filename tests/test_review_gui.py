"""Reviewing in the real LabelImg under Xvfb: zoom, scroll, fit, draw, move, resize,
relabel, delete, save and verify, driven with xdotool; then the XML is checked.

Skipped only where no X server can be started (Xvfb or xdotool missing).
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from auto_annotate import voc
from auto_annotate.annotate import Options, annotate_folder
from auto_annotate.label_map import parse_label_map
from tests import gui
from tests.helpers import BLUE, LABEL_MAP, RED, FakeColorDetector, draw, save

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(gui.MISSING), reason=f"no X server: {gui.MISSING} not installed"),
]
pytest.importorskip("labelImg.labelImg", reason="LabelImg not installed")
SIZE = (400, 300)
MAGENTA = (255, 0, 255)


def sample_folder(root):
    imgs = root / "imgs"
    for name, rects in (("a.png", [(RED, (40, 30, 120, 100)), (BLUE, (200, 150, 300, 260))]),
                        ("b.png", [(RED, (10, 10, 50, 50))])):
        pixels = draw(SIZE, rects)
        pixels[:4, :4] = MAGENTA
        pixels[-4:, -4:] = MAGENTA
        save(imgs / name, pixels)
    annotate_folder(FakeColorDetector(), parse_label_map(LABEL_MAP), imgs, root / "xml",
                    Options(progress=False))
    return imgs, root / "xml"


@pytest.fixture()
def labelimg(tmp_path):
    imgs, xml = sample_folder(tmp_path)
    server = gui.XServer()
    desktop = gui.Desktop(server.display)
    log = (tmp_path / "labelimg.log").open("w")
    app = subprocess.Popen(
        [sys.executable, "-m", "auto_annotate.review", "--imgs_path", str(imgs),
         "--xml_path", str(xml)],
        env={**desktop.env, "HOME": str(tmp_path)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        window = desktop.wait_window(r"labelImg .*a\.png")
        desktop.xdotool("windowsize", window, "1200", "950")
        desktop.xdotool("windowfocus", window)
        time.sleep(1.0)
        yield desktop, app, imgs, xml, tmp_path / "labelimg.log"
    finally:
        app.kill()
        app.wait(10)
        log.close()
        server.stop()


def alive(app, log_path) -> None:
    assert app.poll() is None, "LabelImg died:\n" + log_path.read_text()[-3000:]


def wait_for(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def name_dialog(desktop, name: str) -> None:
    """Types a class name into LabelImg's label dialog and closes it with Return (a first
    Return may only accept the completer's suggestion)."""
    assert wait_for(lambda: desktop.visible("labelImg"), 10), "the label dialog did not open"
    desktop.key("ctrl+a")
    desktop.type(name)
    for _ in range(3):
        desktop.key("Return")
        if wait_for(lambda: not desktop.visible("labelImg"), 2):
            return
    raise AssertionError("the label dialog did not close")


def exercise_view(desktop, app, log):
    """Zoom (keys and ctrl+wheel), scroll both ways, fit width, then fit window; returns
    the image-to-screen map of the fitted view."""
    desktop.key("ctrl+f")
    fitted = gui.image_to_screen(desktop.screenshot(), SIZE)
    assert min(fitted.scale) > 1.2  # fit window enlarged the 400x300 image
    desktop.key("ctrl+KP_Subtract")
    desktop.key("ctrl+KP_Subtract")
    smaller = gui.image_to_screen(desktop.screenshot(), SIZE)
    assert smaller.scale[0] < fitted.scale[0] - 0.1, (smaller.scale, fitted.scale)
    desktop.key("ctrl+KP_Add")
    assert gui.image_to_screen(desktop.screenshot(), SIZE).scale[0] > smaller.scale[0]
    centre = fitted(200, 150)
    desktop.xdotool("mousemove", str(int(centre[0])), str(int(centre[1])))
    desktop.xdotool("keydown", "ctrl")
    for _ in range(8):  # zoom in with the wheel until the image overflows the view
        desktop.xdotool("click", "4")
        time.sleep(0.1)
    desktop.xdotool("keyup", "ctrl")
    time.sleep(0.5)
    alive(app, log)
    before_scroll = desktop.screenshot()
    for button in ("5", "5", "5", "7", "7"):  # scroll down and right
        desktop.xdotool("click", button)
        time.sleep(0.2)
    alive(app, log)
    assert not np.array_equal(before_scroll, desktop.screenshot()), "scrolling moved nothing"
    desktop.key("ctrl+shift+f")
    alive(app, log)
    desktop.key("ctrl+f")
    again = gui.image_to_screen(desktop.screenshot(), SIZE)
    np.testing.assert_allclose(again.scale, fitted.scale, atol=0.02)
    return again


def test_review_session_edits_boxes_and_verifies(labelimg):
    desktop, app, _, xml, log = labelimg
    before = voc.read_voc(xml / "a.xml")
    to_screen = exercise_view(desktop, app, log)

    # draw a new box and name it "smoke"
    desktop.click(to_screen(380, 150))  # empty canvas: focus, nothing selected
    desktop.key("w")
    desktop.drag(to_screen(250, 40), to_screen(350, 120))
    alive(app, log)
    name_dialog(desktop, "smoke")
    # move the red box by (+20, +30) image pixels, dragging from inside it
    desktop.drag(to_screen(80, 65), to_screen(100, 95))
    # resize the blue box: drag its bottom-right corner 20 px left and 10 px up
    desktop.click(to_screen(250, 200))
    desktop.drag(to_screen(300, 260), to_screen(280, 250))
    alive(app, log)
    # relabel the new box: select it, Ctrl+E, choose "flame"
    desktop.click(to_screen(300, 80))
    desktop.key("ctrl+e")
    name_dialog(desktop, "flame")
    # draw a box by mistake, then select it and delete it
    desktop.click(to_screen(380, 150))
    desktop.key("w")
    desktop.drag(to_screen(20, 200), to_screen(100, 280))
    name_dialog(desktop, "smoke")
    desktop.click(to_screen(60, 240))
    desktop.key("Delete")
    alive(app, log)
    desktop.key("ctrl+s")
    desktop.key("space")  # verify (LabelImg saves the verified file)
    alive(app, log)
    assert wait_for(lambda: voc.is_verified(xml / "a.xml")), log.read_text()[-2000:]

    after = voc.read_voc(xml / "a.xml")
    for field in ("filename", "folder", "path", "width", "height", "depth", "database"):
        assert getattr(after, field) == getattr(before, field), field
    assert [obj.name for obj in after.objects] == ["flame", "smoke", "flame"]
    moved, resized, new = (np.array(obj.box) for obj in after.objects)
    tolerance = 2.0
    np.testing.assert_allclose(moved, np.array(before.objects[0].box) + [20, 30, 20, 30],
                               atol=tolerance)
    np.testing.assert_allclose(resized, np.array(before.objects[1].box) + [0, 0, -20, -10],
                               atol=tolerance)
    np.testing.assert_allclose(new, [250, 40, 350, 120], atol=tolerance)
    raw = (xml / "a.xml").read_text()
    assert raw.startswith('<annotation verified="yes">\n\t<folder>imgs</folder>')
    assert "<truncated>0</truncated>" in raw and "<difficult>0</difficult>" in raw
