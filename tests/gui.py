"""Driving a real X11 application for tests: Xvfb, xdotool, and screenshots.

Nothing here knows LabelImg's internals: input goes through the X server as a person's
would, and positions are found on screenshots.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import numpy as np

MISSING = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]


class XServer:
    """A private Xvfb display, started on a free display number."""

    def __init__(self, size: str = "1280x1024x24") -> None:
        read_fd, write_fd = os.pipe()
        self.process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp"],
            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_fd)
        with os.fdopen(read_fd) as stream:
            number = stream.readline().strip()
        if not number:
            self.process.kill()
            raise RuntimeError("Xvfb did not start")
        self.display = f":{number}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Desktop:
    """Keyboard, mouse and screenshots on one display."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}

    def xdotool(self, *args: str) -> str:
        result = subprocess.run(["xdotool", *args], env=self.env, capture_output=True,
                                text=True, timeout=30)
        return result.stdout.strip()

    def wait_window(self, title_regex: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.xdotool("search", "--name", title_regex).split()
            if found:
                return found[0]
            time.sleep(0.2)
        raise TimeoutError(f"no window named {title_regex!r} after {timeout} s")

    def visible(self, title: str) -> list[str]:
        """Ids of the visible windows whose whole title is ``title`` (a regular expression).

        xdotool's own --name search does not honour ``^...$`` anchors, so titles are
        matched here.
        """
        ids = self.xdotool("search", "--onlyvisible", "--name", ".*").split()
        return [i for i in ids if re.fullmatch(title, self.xdotool("getwindowname", i))]

    def key(self, *keys: str, pause: float = 0.4) -> None:
        self.xdotool("key", "--clearmodifiers", *keys)
        time.sleep(pause)

    def type(self, text: str) -> None:
        self.xdotool("type", "--delay", "30", text)
        time.sleep(0.3)

    def click(self, point, button: int = 1, pause: float = 0.3) -> None:
        self.xdotool("mousemove", str(int(point[0])), str(int(point[1])))
        time.sleep(0.1)
        self.xdotool("click", str(button))
        time.sleep(pause)

    def drag(self, start, end, steps: int = 6) -> None:
        self.xdotool("mousemove", str(int(start[0])), str(int(start[1])))
        time.sleep(0.2)
        self.xdotool("mousedown", "1")
        for step in range(1, steps + 1):
            x = start[0] + (end[0] - start[0]) * step / steps
            y = start[1] + (end[1] - start[1]) * step / steps
            self.xdotool("mousemove", str(round(x)), str(round(y)))
            time.sleep(0.05)
        self.xdotool("mouseup", "1")
        time.sleep(0.5)

    def screenshot(self) -> np.ndarray:
        from PIL import ImageGrab

        return np.asarray(ImageGrab.grab(xdisplay=self.display).convert("RGB"))


def find_color(shot: np.ndarray, color, tolerance: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the pixels of ``color`` in a screenshot."""
    close = np.all(np.abs(shot.astype(int) - np.array(color)) <= tolerance, axis=2)
    return np.nonzero(close)


def image_to_screen(shot: np.ndarray, image_wh, marker=(255, 0, 255)):
    """The map from image pixel coordinates to screen coordinates, found from two marker
    squares drawn in the image's top-left and bottom-right corners."""
    rows, cols = find_color(shot, marker)
    if len(rows) == 0:
        raise AssertionError("corner markers not on screen")
    middle_x, middle_y = (cols.min() + cols.max()) / 2, (rows.min() + rows.max()) / 2
    top_left = (cols[cols < middle_x].min(), rows[rows < middle_y].min())
    bottom_right = (cols[cols > middle_x].max() + 1, rows[rows > middle_y].max() + 1)
    scale_x = (bottom_right[0] - top_left[0]) / image_wh[0]
    scale_y = (bottom_right[1] - top_left[1]) / image_wh[1]

    def to_screen(x: float, y: float) -> tuple[float, float]:
        return top_left[0] + x * scale_x, top_left[1] + y * scale_y

    to_screen.scale = (scale_x, scale_y)
    return to_screen
