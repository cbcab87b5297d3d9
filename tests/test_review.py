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


def _queue(tmp_path, names: list[str]):
    imgs, xml = tmp_path / "U", tmp_path / "W" / "labels"
    for name in sorted(set(names)):
        save(imgs / name, draw((60, 40), [(RED, (5, 5, 20, 20))]))
    xml.mkdir(parents=True)
    (xml / "predefined_classes.txt").write_text("flame\nsmoke\n")
    voc.write_voc(xml / "b.xml", voc.VocAnnotation("b.png", 60, 40, objects=(
        voc.VocObject("flame", (4.0, 4.0, 20.0, 20.0), difficult=True),)))
    queue = tmp_path / "W" / "report" / "review_queue.csv"
    queue.parent.mkdir(parents=True)
    lines = ["round,image,status,boxes,min_score,max_score,split,path,xml"]
    lines += [f"1,U/{n},auto,1,0.5,0.5,train,{imgs / n},{xml / n.replace('.png', '.xml')}"
              for n in names]
    queue.write_text("\n".join(lines) + "\n")
    return queue, imgs, xml


def test_the_review_queue_is_read_in_order_once_each(tmp_path):
    queue, imgs, xml = _queue(tmp_path, ["c.png", "a.png", "b.png", "a.png"])
    (imgs / "b.png").unlink()
    order, folder = review.read_queue(queue)
    assert order == [imgs / "c.png", imgs / "a.png"] and folder == xml
    (tmp_path / "bad.csv").write_text("round,image\n1,x\n")
    with pytest.raises(AnnotateError, match="needs 'path' and 'xml' columns"):
        review.read_queue(tmp_path / "bad.csv")
    with pytest.raises(AnnotateError, match="cannot read the review queue"):
        review.read_queue(tmp_path / "missing.csv")


def test_labelimg_shows_the_queue_in_queue_order_with_suggestions(tmp_path, monkeypatch):
    pytest.importorskip("labelImg.labelImg", reason="LabelImg not installed")
    monkeypatch.setenv("HOME", str(tmp_path))
    queue, imgs, _xml = _queue(tmp_path, ["c.png", "b.png", "a.png"])
    order, folder = review.read_queue(queue)
    app, window = review.start(review.prepare(order[0].parent, folder), order)
    try:
        app.processEvents()
        assert window.m_img_list == [str(imgs / n) for n in ("c.png", "b.png", "a.png")]
        assert window.file_path == str(imgs / "c.png")  # not a.png, LabelImg's first by name
        window.open_next_image()
        assert window.file_path == str(imgs / "b.png")
        # a held-back image's suggestion is shown, marked difficult, as an editable box
        assert [(s.label, s.difficult) for s in window.canvas.shapes] == [("flame", True)]
    finally:
        window.close()
        app.processEvents()
