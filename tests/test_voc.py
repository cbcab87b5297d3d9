"""Pascal VOC: byte-identical to LabelImg's writer, LabelImg's reader agrees, strict reader."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from libs.pascal_voc_io import PascalVocReader, PascalVocWriter
from PIL import Image

from auto_annotate import boxes as box_ops
from auto_annotate import voc
from auto_annotate.errors import VocError
from auto_annotate.images import decode_image

ANNOTATION = voc.VocAnnotation(
    filename="a b.jpg", width=640, height=480, depth=3, folder="imgs", path="/data/imgs/a b.jpg",
    objects=(voc.VocObject("flame", (0.0, 4.0, 100.0, 480.0)),
             voc.VocObject("smoke", (9.0, 19.0, 30.0, 40.0), difficult=True)))


@pytest.mark.parametrize("verified", [False, True])
def test_xml_is_byte_identical_to_labelimg_writer(tmp_path, verified):
    writer = PascalVocWriter("imgs", "a b.jpg", (480, 640, 3), local_img_path="/data/imgs/a b.jpg")
    writer.add_bnd_box(1, 5, 100, 480, "flame", 0)
    writer.add_bnd_box(10, 20, 30, 40, "smoke", 1)
    writer.verified = verified
    writer.save(str(tmp_path / "labelimg.xml"))
    ours = voc.annotation_to_xml(voc.VocAnnotation(**{**ANNOTATION.__dict__, "verified": verified}))
    assert ours == (tmp_path / "labelimg.xml").read_text(encoding="utf-8")


def test_round_trip_and_labelimg_reader_see_the_same_boxes(tmp_path):
    path = tmp_path / "a.xml"
    voc.write_voc(path, ANNOTATION)
    assert voc.read_voc(path) == ANNOTATION
    shapes = PascalVocReader(str(path)).get_shapes()
    assert [(label, points[0], points[2], difficult) for label, points, _, _, difficult in shapes] \
        == [("flame", (1, 5), (100, 480), False), ("smoke", (10, 20), (30, 40), True)]


def test_verified_flag_survives_and_labelimg_reads_it(tmp_path):
    path = tmp_path / "v.xml"
    voc.write_voc(path, voc.VocAnnotation(**{**ANNOTATION.__dict__, "verified": True}))
    assert voc.is_verified(path) and voc.read_voc(path).verified
    assert PascalVocReader(str(path)).verified


@pytest.mark.parametrize("box,disk", [
    ((0.0, 0.0, 64.0, 48.0), (1, 1, 64, 48)),          # whole image
    ((-3.0, -1.0, 70.0, 50.0), (1, 1, 64, 48)),        # overshoot is clipped
    ((10.4, 10.6, 20.5, 20.49), (11, 12, 21, 20)),     # round half up
    ((30.2, 5.0, 30.3, 5.1), (31, 6, 31, 6)),          # never max < min
])
def test_disk_box_is_one_based_integer_and_clipped(box, disk):
    assert voc.disk_box(box, width=64, height=48) == disk


def test_reader_goes_by_tag_name_and_ignores_extra_tags():
    text = """<annotation><size><height>557</height><width>640</width></size>
      <object><name>flame</name><occluded>0</occluded>
        <bndbox><xmin>1</xmin><xmax>640</xmax><ymin>1</ymin><ymax>467</ymax></bndbox>
      </object></annotation>"""
    annotation = voc.parse_voc(text)
    assert (annotation.width, annotation.height) == (640, 557)
    assert annotation.objects == (voc.VocObject("flame", (0.0, 0.0, 640.0, 467.0)),)


@pytest.mark.parametrize("text,problem", [
    ("<annotation><size>", "malformed XML"),
    ("<voc/>", "expected <annotation>"),
    ("<annotation/>", "no <size>"),
    ("<annotation><size><width>0</width><height>5</height></size></annotation>", "not positive"),
    ("<annotation><size><width>9</width><height>5</height></size>"
     "<object><name>a</name></object></annotation>", "no <bndbox>"),
    ("<annotation><size><width>9</width><height>5</height></size><object><name>a</name>"
     "<bndbox><xmin>x</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>"
     "</annotation>", "not a number"),
    ("<annotation><size><width>9</width><height>5</height></size><object><name>a</name>"
     "<bndbox><xmin>5</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>"
     "</annotation>", "xmax < xmin"),
])
def test_malformed_voc_raises_naming_the_file(tmp_path, text, problem):
    path = tmp_path / "bad.xml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(VocError, match=problem) as error:
        voc.read_voc(path)
    assert str(path) in str(error.value)


def test_real_exif_labels_are_in_the_upright_frame_and_stored_frame_files_convert(exif_dir):
    """exif_raw XML is in the upright frame (what LabelImg shows) and stays as it is; the
    same boxes written in the stored frame, as EXIF-blind tools do, convert back to it and
    cover the same pixels."""
    xml_files = sorted(exif_dir.glob("*.xml"))
    assert len(xml_files) == 3
    for xml_path in xml_files:
        image = decode_image(xml_path.with_suffix(".jpg"))
        annotation = voc.read_voc(xml_path)
        assert image.orientation in (6, 8)
        assert (annotation.height, annotation.width) == image.hw
        assert voc.to_upright_frame(annotation, image.stored_hw, image.orientation) == annotation
        raw = np.asarray(Image.open(xml_path.with_suffix(".jpg")))
        stored_boxes = box_ops.upright_to_stored(
            np.array([o.box for o in annotation.objects]), image.stored_hw, image.orientation)
        blind = replace(annotation, width=image.stored_hw[1], height=image.stored_hw[0],
                        objects=tuple(replace(o, box=tuple(b)) for o, b in
                                      zip(annotation.objects, stored_boxes, strict=True)))
        back = voc.to_upright_frame(blind, image.stored_hw, image.orientation)
        for upright_obj, back_obj, stored_box in zip(annotation.objects, back.objects,
                                                     stored_boxes, strict=True):
            np.testing.assert_allclose(back_obj.box, upright_obj.box, atol=1e-3)
            # a few source boxes overshoot the edge by a pixel (flames README): clip them
            x0, y0, x1, y1 = (max(0, int(v)) for v in upright_obj.box)
            sx0, sy0, sx1, sy1 = (max(0, int(v)) for v in stored_box)
            upright_crop = image.upright[y0:y1, x0:x1].astype(float)
            stored_crop = raw[sy0:sy1, sx0:sx1].astype(float)
            assert upright_crop.size == stored_crop.size
            assert abs(upright_crop.mean() - stored_crop.mean()) < 1.0


def test_size_matching_neither_frame_is_an_error():
    annotation = voc.VocAnnotation(filename="x.jpg", width=100, height=50)
    with pytest.raises(VocError, match="matches neither"):
        voc.to_upright_frame(annotation, (60, 100), 6)


def test_one_rule_pairs_an_image_with_its_voc_file(tmp_path):
    """Beside the image, or its sub-folder mirrored under an XML folder; the stem counts
    (a dotted name keeps its dots), and voc_pairs lists only images whose file exists."""
    from auto_annotate.voc import label_path, voc_pairs

    assert label_path(tmp_path / "a.b.JPG") == tmp_path / "a.b.xml"
    assert label_path(Path("sub/c.png"), tmp_path / "xml") == tmp_path / "xml" / "sub" / "c.xml"
    assert label_path("d.jpeg", "labels") == Path("labels/d.xml")
    for name in ("with.png", "without.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "with.xml").write_text("<annotation/>")
    assert voc_pairs(tmp_path) == [(tmp_path / "with.png", tmp_path / "with.xml")]
