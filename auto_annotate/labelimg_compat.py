"""Lets LabelImg 1.8.6 run on Python 3.10+ without touching the installed package.

LabelImg passes floats to Qt methods that take ints (``QPainter.drawLine`` while drawing a
box, ``QScrollBar.setValue`` while scrolling or zooming, ``QSpinBox.setValue`` for the zoom
level). Python 3.10 stopped converting floats to ints implicitly, so PyQt5 raises
``TypeError`` and LabelImg dies with unsaved work. :func:`install` wraps exactly those
methods, in this process only, so a float argument is truncated to int as older Pythons
did; every other argument passes through unchanged. The review launcher calls it before
LabelImg starts.
"""

from __future__ import annotations

import functools

__all__ = ["PATCHED", "install", "uninstall"]

# (Qt module, class) -> methods that LabelImg 1.8.6 calls with float arguments
PATCHED = {
    ("QtGui", "QPainter"): ("drawLine", "drawRect", "drawText", "drawEllipse", "drawPoint"),
    ("QtWidgets", "QAbstractSlider"): ("setValue",),
    ("QtWidgets", "QSpinBox"): ("setValue",),
}
_MARK = "_labelimg_compat_original"


def _int_arguments(method):
    @functools.wraps(method)
    def wrapper(self, *args):
        return method(self, *(int(a) if isinstance(a, float) else a for a in args))

    setattr(wrapper, _MARK, method)
    return wrapper


def install() -> None:
    """Wraps the methods in PATCHED; calling it again changes nothing."""
    from PyQt5 import QtGui, QtWidgets

    modules = {"QtGui": QtGui, "QtWidgets": QtWidgets}
    for (module, class_name), methods in PATCHED.items():
        cls = getattr(modules[module], class_name)
        for name in methods:
            method = getattr(cls, name)
            if not hasattr(method, _MARK):
                setattr(cls, name, _int_arguments(method))


def uninstall() -> None:
    """Restores the original methods (for tests)."""
    from PyQt5 import QtGui, QtWidgets

    modules = {"QtGui": QtGui, "QtWidgets": QtWidgets}
    for (module, class_name), methods in PATCHED.items():
        cls = getattr(modules[module], class_name)
        for name in methods:
            original = getattr(getattr(cls, name), _MARK, None)
            if original is not None:
                setattr(cls, name, original)
