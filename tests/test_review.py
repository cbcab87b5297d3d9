"""The review command: LabelImg's argv, the class list, and LabelImg opening our labels."""

from __future__ import annotations

import pytest

from auto_annotate import review, voc
from auto_annotate.annotate import Options, annotate_folder
from auto_annotate.errors import AnnotateError
from auto_annotate.label_map import parse_label_map
from tests.helpers import BLUE, LABEL_MAP, RED, FakeColorDetector, draw, save


def test_argv_points_labelimg_at_images_classes_and_xml(tmp_path, label_map_path):
    imgs, xml = tmp_path / "imgs", tmp_path / "xml"
    imgs.mkdir()
    argv = review.prepare(imgs, xml, label_map_path)
    assert argv == ["labelImg", str(imgs.resolve()), str(xml.resolve() / "predefined_classes.txt"),
                    str(xml.resolve())]
    assert (xml / "predefined_classes.txt").read_text() == "flame\nsmoke\n"


def test_missing_folder_or_class_list_is_an_error(tmp_path):
    with pytest.raises(AnnotateError, match="image folder does not exist"):
        review.prepare(tmp_path / "nope")
    with pytest.raises(AnnotateError, match="pass --label_map_path"):
        review.prepare(tmp_path)
    assert review.main(["--imgs_path", str(tmp_path / "nope")]) == 2


def test_labelimg_opens_our_labels(tmp_path, monkeypatch):
    """LabelImg's real main window, on Qt's offscreen platform, loads our boxes."""
    pytest.importorskip("labelImg.labelImg", reason="LabelImg not installed")
    monkeypatch.setenv("HOME", str(tmp_path))  # LabelImg keeps its settings in ~
    imgs = tmp_path / "imgs"
    save(imgs / "a.png", draw((120, 80), [(RED, (10, 5, 30, 25)), (BLUE, (50, 40, 100, 70))]))
    annotate_folder(FakeColorDetector(), parse_label_map(LABEL_MAP), imgs,
                    options=Options(progress=False))
    app, window = review.start(review.prepare(imgs))
    try:
        app.processEvents()
        assert window.file_path == str(imgs / "a.png")
        shown = sorted((s.label, s.points[0].x(), s.points[0].y()) for s in window.canvas.shapes)
        assert shown == [("flame", 11, 6), ("smoke", 51, 41)]
        assert window.label_hist[:2] == ["flame", "smoke"]
        assert voc.read_voc(imgs / "a.xml").objects[0].name == "flame"
    finally:
        window.close()
        app.processEvents()
