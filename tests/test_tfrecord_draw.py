"""Drawing records back onto their images: the box outline lands on the labelled patch."""

from __future__ import annotations

import numpy as np
from PIL import Image

from auto_annotate import voc
from tests.helpers import BLUE, draw, save
from tsoda.tfrecord_draw import draw_tfrecords
from tsoda.tfrecords import write_tfrecords


def test_drawn_box_outlines_the_patch(tmp_path):
    save(tmp_path / "a.png", draw((200, 120), [(BLUE, (50, 30, 150, 90))]))
    voc.write_voc(tmp_path / "a.xml", voc.VocAnnotation(
        "a.png", 200, 120, objects=(voc.VocObject("flame", (50.0, 30.0, 150.0, 90.0)),)))
    (tmp_path / "map.pbtxt").write_text('item { id: 1 name: "flame" }')
    report = write_tfrecords(tmp_path, tmp_path, tmp_path / "map.pbtxt", tmp_path / "r.record")
    written = draw_tfrecords(report.output_paths[0], tmp_path / "drawn", count=5)
    assert [p.name for p in written] == ["0_a.png"]
    pixels = np.asarray(Image.open(written[0]).convert("RGB"))
    green = np.all(pixels == (0, 255, 0), axis=2)
    assert green[60, 50] and green[60, 149]  # left and right edges of the box
    assert not green[60, 100]  # inside stays the image
