"""Drawing records back onto their images: the box outline lands on the labelled patch."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from auto_annotate import voc
from tests.helpers import BLUE, draw, save
from tsoda.data.draw import draw_tfrecords
from tsoda.data.tfrecords import write_tfrecords


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


def test_crafted_source_ids_cannot_write_outside_the_output_dir(tmp_path):
    from tsoda.data.tfrecords import EncodedImage, RecordObjects, build_example, write_shards

    buffer = io.BytesIO()
    Image.fromarray(draw((20, 10))).save(buffer, format="PNG")
    image = EncodedImage(buffer.getvalue(), "png", (10, 20))
    crafted = [("../../escaped", "a.png"), (str(tmp_path / "absolute"), "b.png"),
               ("0", "../../c.png"), ("..", "..\\..\\d.png"), ("/", "")]
    records = []
    for source_id, filename in crafted:
        example = build_example(image, RecordObjects(np.zeros((0, 4), np.float32)), filename, 0)
        example.features.feature["image/source_id"].bytes_list.value[0] = source_id.encode()
        records.append(example.SerializeToString())
    [path] = write_shards(records, tmp_path / "crafted.record", 1)
    output = tmp_path / "deep" / "drawn"
    written = draw_tfrecords(path, output, count=10)
    assert len(written) == len(crafted) == len(set(written))
    assert all(p.parent == output and p.is_file() for p in written)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == \
        sorted(f"deep/drawn/{p.name}" for p in written)
    assert not any(p.name.startswith(".") for p in written)
