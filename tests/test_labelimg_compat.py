"""The LabelImg compatibility layer: float arguments that Python 3.10+ PyQt5 refuses."""

from __future__ import annotations

import pytest

QtWidgets = pytest.importorskip("PyQt5.QtWidgets", reason="PyQt5 not installed")
from PyQt5 import QtGui  # noqa: E402
from PyQt5.QtCore import QPointF  # noqa: E402

from auto_annotate import labelimg_compat  # noqa: E402


@pytest.fixture()
def qt_app():
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    yield app
    labelimg_compat.uninstall()


def float_calls():
    """The calls LabelImg 1.8.6 makes with floats while drawing, scrolling and zooming."""
    image = QtGui.QImage(20, 20, QtGui.QImage.Format_RGB32)
    painter = QtGui.QPainter(image)
    try:
        painter.drawLine(1.5, 0.0, 1.5, 20.0)          # canvas.py, crosshair while drawing
        painter.drawRect(1.2, 2.7, 5.5, 6.1)           # canvas.py, box being drawn
        painter.drawText(3.9, 4.2, "flame")            # shape.py, label text
    finally:
        painter.end()
    area = QtWidgets.QScrollArea()
    bar = area.verticalScrollBar()
    bar.setMaximum(100)
    bar.setValue(bar.value() + bar.singleStep() * 2.5)  # labelImg.py, scroll_request
    spin = QtWidgets.QSpinBox()
    spin.setMaximum(500)
    spin.setValue(100 + 12.5)                            # labelImg.py, add_zoom
    return bar.value(), bar.singleStep(), spin.value()


def test_pyqt_refuses_floats_without_the_layer(qt_app):
    labelimg_compat.uninstall()
    with pytest.raises(TypeError, match="float"):
        float_calls()


def test_layer_truncates_floats_like_older_pythons(qt_app):
    labelimg_compat.install()
    labelimg_compat.install()  # twice changes nothing
    scrolled, step, zoom = float_calls()
    assert (scrolled, zoom) == (int(step * 2.5), 112)
    original = QtGui.QPainter.drawLine._labelimg_compat_original
    assert not hasattr(original, "_labelimg_compat_original")  # wrapped once only


def test_integer_and_qt_object_arguments_pass_through(qt_app):
    labelimg_compat.install()
    image = QtGui.QImage(10, 10, QtGui.QImage.Format_RGB32)
    image.fill(0)
    painter = QtGui.QPainter(image)
    painter.setPen(QtGui.QColor(255, 255, 255))
    painter.drawLine(QPointF(0, 0), QPointF(9, 0))
    painter.drawRect(QtGui.QPolygonF().boundingRect())
    painter.end()
    assert QtGui.QColor(image.pixel(5, 0)).red() == 255
