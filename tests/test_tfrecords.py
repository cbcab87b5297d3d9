"""TFRecords from VOC: keys and boxes round-trip, pixels and boxes share the upright frame,
sharding, per-file problems reported while the batch goes on, CLI exit codes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from auto_annotate import boxes as box_ops
from auto_annotate.images import decode_image
from auto_annotate.voc import read_voc
from tests.helpers import BLUE, RED, draw, save
from tsoda.data import read as tfrecord_read
from tsoda.data import tfrecords

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _xml(folder: Path, stem: str, filename: str, size_wh, objects=()) -> Path:
    """Writes VOC XML by hand, so boxes may overshoot the image (write_voc would clip them).

    ``objects`` are (name, 0-based pixel xyxy[, difficult]); on disk xmin/ymin get +1.
    """
    parts = [f"<annotation><filename>{filename}</filename><size><width>{size_wh[0]}</width>"
             f"<height>{size_wh[1]}</height><depth>3</depth></size>"]
    for name, (x0, y0, x1, y1), *difficult in objects:
        parts.append(f"<object><name>{name}</name><difficult>{int(any(difficult))}</difficult>"
                     f"<bndbox><xmin>{x0 + 1:g}</xmin><ymin>{y0 + 1:g}</ymin>"
                     f"<xmax>{x1:g}</xmax><ymax>{y1:g}</ymax></bndbox></object>")
    path = folder / f"{stem}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join([*parts, "</annotation>"]), encoding="utf-8")
    return path


def _records(report) -> list[dict]:
    return list(tfrecord_read.read_tfrecords(report.output_paths))


def _write(tmp_path, label_map_path, **kwargs):
    return tfrecords.write_tfrecords(tmp_path / "data", tmp_path / "data", label_map_path,
                                     tmp_path / "out" / "train.record", **kwargs)


def test_round_trip_keys_and_boxes_on_a_non_square_image(tmp_path, label_map_path):
    data = tmp_path / "data"
    image = save(data / "a.png", draw((64, 40), [(RED, (4, 6, 30, 20))]))
    _xml(data, "a", "a.png", (64, 40), [("flame", (4.0, 6.0, 30.0, 20.0)),
                                        ("smoke", (50.0, -3.0, 70.0, 40.0), True)])
    report = _write(tmp_path, label_map_path)
    assert (report.examples, report.boxes, report.negatives, report.ok) == (1, 2, 0, True)
    assert report.output_paths == [tmp_path / "out" / "train.record"]
    [record] = _records(report)
    assert (record["height"], record["width"], record["image"].shape) == (40, 64, (40, 64, 3))
    assert (record["filename"], record["source_id"], record["format"]) == ("a.png", "0", "png")
    expected_xyxy = np.array([[4, 6, 30, 20], [50, 0, 64, 40]], np.float32)  # second clipped
    np.testing.assert_allclose(record["boxes_yxyx_normalized"],
                               box_ops.pixel_xyxy_to_normalized_yxyx(expected_xyxy, (40, 64)),
                               atol=1e-5)
    np.testing.assert_allclose(record["boxes_xyxy_pixel"], expected_xyxy, atol=1e-4)
    assert record["class_ids"].tolist() == [1, 2]
    assert record["class_texts"] == ["flame", "smoke"]
    assert record["difficult"].tolist() == [0, 1]
    np.testing.assert_allclose(record["area"], [26 * 14, 14 * 40])
    np.testing.assert_array_equal(record["image"], decode_image(image).upright)
    assert record["encoded"] == image.read_bytes()


def test_model_garden_decoder_reads_the_records(tmp_path, label_map_path):
    decoder_module = pytest.importorskip("official.vision.dataloaders.tf_example_decoder")
    import tensorflow as tf

    save(tmp_path / "data" / "a.png", draw((64, 40)))
    _xml(tmp_path / "data", "a", "a.png", (64, 40), [("flame", (16.0, 10.0, 32.0, 30.0))])
    report = _write(tmp_path, label_map_path)
    serialized = next(iter(tf.data.TFRecordDataset([str(report.output_paths[0])])))
    decoded = decoder_module.TfExampleDecoder().decode(serialized)
    assert int(decoded["source_id"].numpy()) == 0
    assert decoded["image"].shape == (40, 64, 3)
    np.testing.assert_allclose(decoded["groundtruth_boxes"].numpy(), [[0.25, 0.25, 0.75, 0.5]])
    assert decoded["groundtruth_classes"].numpy().tolist() == [1]
    assert decoded["groundtruth_area"].numpy().tolist() == [320.0]
    assert decoded["groundtruth_is_crowd"].numpy().tolist() == [False]


def test_image_without_objects_is_kept_as_a_negative(tmp_path, label_map_path):
    save(tmp_path / "data" / "empty.jpg", draw((50, 30)))
    _xml(tmp_path / "data", "empty", "empty.jpg", (50, 30))
    report = _write(tmp_path, label_map_path)
    assert (report.examples, report.negatives, report.boxes, report.ok) == (1, 1, 0, True)
    [record] = _records(report)
    assert record["boxes_yxyx_normalized"].shape == (0, 4) and record["format"] == "jpeg"
    assert record["encoded"] == (tmp_path / "data" / "empty.jpg").read_bytes()  # copied as is


UPRIGHT_WH, PATCH = (40, 64), (6, 30, 26, 54)  # upright image 40 wide, 64 high; red patch xyxy


def _rotated_jpeg(path: Path) -> Path:
    """A JPEG stored sideways with orientation 6, upright 40x64 with a red patch."""
    upright = draw(UPRIGHT_WH, [(RED, PATCH)], background=(20, 20, 230))
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # 90° counter-clockwise
    return save(path, stored, orientation=6, quality=98)


def _patch_colour(record: dict) -> np.ndarray:
    x0, y0, x1, y1 = np.round(record["boxes_xyxy_pixel"][0]).astype(int)
    return record["image"][y0 + 2:y1 - 2, x0 + 2:x1 - 2].reshape(-1, 3).mean(axis=0)


@pytest.mark.parametrize("frame", ["upright", "stored"])
def test_exif_rotated_jpeg_is_stored_upright_with_its_boxes(tmp_path, label_map_path, frame):
    image = _rotated_jpeg(tmp_path / "data" / "phone.jpg")
    decoded = decode_image(image)
    assert (decoded.orientation, decoded.stored_hw, decoded.hw) == (6, (40, 64), (64, 40))
    if frame == "upright":
        _xml(tmp_path / "data", "phone", "phone.jpg", UPRIGHT_WH, [("flame", PATCH)])
    else:  # written by an EXIF-blind tool: size and box in the stored frame
        stored_box = box_ops.upright_to_stored(np.array([PATCH]), (40, 64), 6)[0]
        _xml(tmp_path / "data", "phone", "phone.jpg", (64, 40), [("flame", tuple(stored_box))])
    report = _write(tmp_path, label_map_path)
    assert report.ok, report.format()
    [record] = _records(report)
    assert record["image"].shape == (64, 40, 3) and (record["height"], record["width"]) == (64, 40)
    assert np.abs(record["image"].astype(int) - decoded.upright).mean() < 3
    np.testing.assert_allclose(record["boxes_xyxy_pixel"], [PATCH], atol=1e-4)
    np.testing.assert_allclose(_patch_colour(record), RED, atol=12)
    assert record["format"] == "jpeg"


def test_shards_hold_every_example_once_and_no_temporary_file_is_left(tmp_path,
                                                                      label_map_path):
    for index in range(7):
        save(tmp_path / "data" / f"i{index}.png", draw((30, 20)))
        _xml(tmp_path / "data", f"i{index}", f"i{index}.png", (30, 20),
             [("flame", (1.0, 1.0, 10.0, 10.0))])
    report = _write(tmp_path, label_map_path, num_shards=3)
    names = [f"train.record-0000{i}-of-00003" for i in range(3)]
    assert [p.name for p in report.output_paths] == names
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names
    per_shard = [list(tfrecord_read.read_tfrecords(path)) for path in report.output_paths]
    assert [len(records) for records in per_shard] == [3, 2, 2]
    records = [record for shard in per_shard for record in shard]
    assert sorted(int(r["source_id"]) for r in records) == list(range(7))
    assert sorted(r["filename"] for r in records) == [f"i{i}.png" for i in range(7)]


def test_failed_write_leaves_old_output_and_no_partial_shard(tmp_path):
    output = tmp_path / "train.record"
    output.write_bytes(b"old")

    def failing():
        yield b"record"
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        tfrecords.write_shards(failing(), output, 1)
    assert [p.name for p in tmp_path.iterdir()] == ["train.record"]
    assert output.read_bytes() == b"old"


def test_unknown_class_and_empty_box_are_dropped_and_the_rest_kept(tmp_path, label_map_path):
    save(tmp_path / "data" / "a.png", draw((60, 30)))
    _xml(tmp_path / "data", "a", "a.png", (60, 30), [
        ("flame", (0.0, 0.0, 10.0, 10.0)), ("dog", (5.0, 5.0, 9.0, 9.0)),
        ("Smoke", (20.0, 5.0, 30.0, 25.0)), ("FLAME", (70.0, 5.0, 80.0, 9.0))])
    report = _write(tmp_path, label_map_path)
    assert not report.ok and report.examples == 1 and report.boxes == 2
    assert [name for name, _ in report.dropped_boxes] == ["a.xml", "a.xml"]
    assert "'dog'" in report.dropped_boxes[0][1] and "label map" in report.dropped_boxes[0][1]
    assert "'FLAME'" in report.dropped_boxes[1][1] and "no area" in report.dropped_boxes[1][1]
    [record] = _records(report)
    assert record["class_ids"].tolist() == [1, 2]
    assert record["class_texts"] == ["flame", "smoke"]  # as the label map spells them
    assert report.class_counts == {"flame": 1, "smoke": 1}


def test_image_found_by_stem_when_filename_is_stale_and_bmp_becomes_png(tmp_path,
                                                                         label_map_path):
    pixels = draw((33, 21), [(BLUE, (3, 3, 12, 9))])
    save(tmp_path / "data" / "b.BMP", pixels)
    _xml(tmp_path / "data", "b", "renamed.jpg", (33, 21), [("flame", (3.0, 3.0, 12.0, 9.0))])
    report = _write(tmp_path, label_map_path)
    [record] = _records(report)
    assert (record["filename"], record["format"]) == ("b.BMP", "png")
    np.testing.assert_array_equal(record["image"], pixels)


def test_bad_files_are_reported_one_line_each_and_the_batch_goes_on(tmp_path, label_map_path):
    data = tmp_path / "data"
    save(data / "good.png", draw((20, 10)))
    _xml(data, "good", "good.png", (20, 10))
    _xml(data, "lonely", "lonely.jpg", (20, 10))
    (data / "broken.xml").write_text("<annotation><size>", encoding="utf-8")
    (data / "corrupt.jpg").write_bytes(b"not a jpeg")
    _xml(data, "corrupt", "corrupt.jpg", (20, 10))
    save(data / "wrongsize.png", draw((20, 10)))
    _xml(data, "wrongsize", "wrongsize.png", (30, 10))
    report = _write(tmp_path, label_map_path)
    assert report.examples == 1 and not report.ok
    problems = dict(report.skipped)
    assert sorted(problems) == ["broken.xml", "corrupt.xml", "lonely.xml", "wrongsize.xml"]
    assert "malformed XML" in problems["broken.xml"]
    assert "corrupt.jpg" in problems["corrupt.xml"]
    assert "no image 'lonely.jpg'" in problems["lonely.xml"]
    assert "matches neither" in problems["wrongsize.xml"]
    assert all("\n" not in problem for problem in problems.values())
    assert [r["filename"] for r in _records(report)] == ["good.png"]


def test_generate_cli_exit_codes_and_one_line_errors(tmp_path, label_map_path, capsys):
    main = _script("generate_tfrecord").main
    data = tmp_path / "data"
    save(data / "a.png", draw((20, 10)))
    _xml(data, "a", "a.png", (20, 10), [("flame", (1.0, 1.0, 5.0, 5.0))])
    args = ["--xml_dir", str(data), "--image_dir", str(data), "--label_map_path",
            str(label_map_path), "--output_path", str(tmp_path / "o" / "x.record")]
    assert main(args) == 0
    assert "1 examples" in capsys.readouterr().out
    _xml(data, "b", "missing.png", (20, 10))
    assert main(args) == 1
    assert "b.xml: no image" in capsys.readouterr().out
    bad_map = tmp_path / "bad.pbtxt"
    bad_map.write_text("item { name: 'x' }", encoding="utf-8")
    for flag, value in (("--xml_dir", tmp_path / "nowhere"), ("--label_map_path", bad_map),
                        ("--num_shards", "0"), ("--output_path", bad_map / "x.record")):
        changed = [*args, "--num_shards", "2"]
        changed[changed.index(flag) + 1] = str(value)
        assert main(changed) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1


def test_draw_cli_writes_pngs_from_decoded_records(tmp_path, label_map_path, capsys):
    _rotated_jpeg(tmp_path / "data" / "phone.jpg")
    _xml(tmp_path / "data", "phone", "phone.jpg", UPRIGHT_WH, [("flame", PATCH)])
    report = _write(tmp_path, label_map_path)
    main = _script("draw_tfrecord").main
    assert main(["--tfrecord", str(report.output_paths[0]), "--output_dir",
                 str(tmp_path / "drawn")]) == 0
    [png] = (tmp_path / "drawn").iterdir()
    assert png.name == "0_phone.png" and Image.open(png).size == UPRIGHT_WH
    assert main(["--tfrecord", str(tmp_path / "none.record"), "--output_dir",
                 str(tmp_path / "drawn")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_real_exif_photos_records_hold_the_labelled_pixels(tmp_path, exif_dir):
    folder = exif_dir
    report = tfrecords.write_tfrecords(folder, folder, exif_dir / "label_map.pbtxt",
                                       tmp_path / "exif.record")
    assert report.ok and report.examples == 3 and report.boxes == 3
    for record in _records(report):
        decoded = decode_image(folder / record["filename"])
        annotation = read_voc((folder / record["filename"]).with_suffix(".xml"))
        assert record["image"].shape[:2] == decoded.hw == (annotation.height, annotation.width)
        for x0, y0, x1, y1 in np.round(record["boxes_xyxy_pixel"]).astype(int):
            ours = record["image"][y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
            truth = decoded.upright[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
            np.testing.assert_allclose(ours, truth, atol=2.0, err_msg=record["filename"])


def test_no_usable_example_writes_no_record_file(tmp_path, label_map_path, capsys):
    _xml(tmp_path / "data", "lonely", "lonely.jpg", (20, 10))  # no image: skipped
    report = _write(tmp_path, label_map_path)
    assert report.examples == 0 and not report.ok and report.output_paths == []
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert "no usable example: no record file written" in report.format()
    main = _script("generate_tfrecord").main
    assert main(["--xml_dir", str(tmp_path / "data"), "--image_dir", str(tmp_path / "data"),
                 "--label_map_path", str(label_map_path), "--output_path",
                 str(tmp_path / "o" / "x.record"), "--num_shards", "2"]) == 1
    assert "lonely.xml: no image" in capsys.readouterr().out
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_label_whose_every_box_has_an_unknown_class_is_skipped_not_a_negative(
        tmp_path, label_map_path):
    for name in ("typo", "fine"):
        save(tmp_path / "data" / f"{name}.png", draw((60, 30)))
    _xml(tmp_path / "data", "typo", "typo.png", (60, 30), [("flme", (0.0, 0.0, 10.0, 10.0))])
    _xml(tmp_path / "data", "fine", "fine.png", (60, 30), [("flame", (0.0, 0.0, 10.0, 10.0))])
    report = _write(tmp_path, label_map_path)
    assert (report.examples, report.negatives, report.boxes) == (1, 0, 1)
    [(name, problem)] = report.skipped
    assert name == "typo.xml" and "'flme'" in problem and "no object" in problem
