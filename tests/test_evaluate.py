"""tsoda evaluate: boxes of unknown classes and unreadable files are never scored silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from auto_annotate import voc
from auto_annotate.label_map import parse_label_map
from tests.helpers import LABEL_MAP, RED, FakeColorDetector, draw, save
from tsoda.errors import TrainingError
from tsoda.training.evaluate import evaluate_pairs

LABELS = parse_label_map(LABEL_MAP)


def _pairs(folder, classes: dict[str, str]):
    pairs = []
    for stem, name in classes.items():
        image = save(folder / f"{stem}.png", draw((60, 40), [(RED, (5, 5, 25, 30))]))
        xml = folder / f"{stem}.xml"
        voc.write_voc(xml, voc.VocAnnotation(image.name, 60, 40, objects=(
            voc.VocObject(name, (5.0, 5.0, 25.0, 30.0)),)))
        pairs.append((image, xml))
    return pairs


def test_a_box_of_a_class_missing_from_the_label_map_is_an_error_naming_it(tmp_path):
    pairs = _pairs(tmp_path, {"a": "flame", "b": "smoke", "c": "flme"})
    with pytest.raises(TrainingError, match=r"c\.xml.*'flme'.*not in the label map"):
        evaluate_pairs(FakeColorDetector(), LABELS, pairs)


def test_unreadable_ground_truth_is_reported_and_the_result_says_fewer_images(tmp_path):
    pairs = _pairs(tmp_path, {"a": "flame", "b": "flame"})
    pairs[1][1].write_text("<annotation><broken")
    metrics = evaluate_pairs(FakeColorDetector(), LABELS, pairs)
    assert (metrics.images, metrics.asked) == (1, 2) and metrics.skipped[0][0].endswith("b.xml")
    assert "scored on 1 of 2 images" in metrics.format()


def test_an_image_the_model_fails_on_is_skipped_not_a_crash(tmp_path):
    pairs = _pairs(tmp_path, {"a": "flame", "b": "flame", "c": "flame"})
    (tmp_path / "d.png").write_bytes(b"not an image")
    pairs.append((tmp_path / "d.png", pairs[0][1]))
    metrics = evaluate_pairs(FakeColorDetector(fail_on=2), LABELS, pairs)  # 2nd call: b
    assert (metrics.images, metrics.asked) == (2, 4)
    assert [(Path(path).name, reason.split(":")[0]) for path, reason in metrics.skipped] == [
        ("b.png", "model failed"), ("d.png", "not a readable image (unknown or corrupt format)")]
    assert metrics.map50 == pytest.approx(1.0) and "scored on 2 of 4 images" in metrics.format()


def test_evaluate_command_exits_non_zero_on_unknown_classes_or_skipped_files(
        tmp_path, models, label_map_path, capsys):
    from tsoda.cli import main

    data = tmp_path / "data"
    _pairs(data, {"a": "flame", "b": "flame"})
    command = ["evaluate", "--saved_model_path", str(models["dynamic"]), "--label_map_path",
               str(label_map_path), "--data_dir", str(data), "--output_path",
               str(tmp_path / "m.json"), "--quiet"]
    assert main(command) == 0
    (data / "b.xml").write_text("<broken")
    assert main(command) == 1 and "scored on 1 of 2 images" in capsys.readouterr().out
    _pairs(data, {"b": "flme"})
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "b.xml" in err and "'flme'" in err and len(err.strip().splitlines()) == 1


def test_difficult_boxes_are_ignore_regions_not_objects_to_find(tmp_path):
    image = save(tmp_path / "a.png", draw((60, 40), [(RED, (5, 5, 25, 30))]))
    xml = tmp_path / "a.xml"
    voc.write_voc(xml, voc.VocAnnotation(image.name, 60, 40, objects=(
        voc.VocObject("flame", (5.0, 5.0, 25.0, 30.0)),
        voc.VocObject("flame", (40.0, 5.0, 55.0, 20.0), difficult=True))))  # nothing there
    metrics = evaluate_pairs(FakeColorDetector(), LABELS, [(image, xml)])
    assert metrics.map50 == pytest.approx(1.0) and metrics.recall == pytest.approx(1.0)
    assert metrics.scored_boxes == 1


def test_evaluate_and_the_loops_detector_factory_take_a_tflite_model(tmp_path, label_map_path,
                                                                     capsys):
    pytest.importorskip("ai_edge_litert.interpreter", reason="the litert extra is not installed")
    from auto_annotate.litert import TFLiteDetector
    from tests.helpers import build_color_tflite
    from tsoda.cli import main
    from tsoda.loop.adapters import model_detector

    model = build_color_tflite(tmp_path / "model.tflite")
    assert isinstance(model_detector()(model), TFLiteDetector)
    data = tmp_path / "data"
    _pairs(data, {"a": "flame", "b": "flame"})
    assert main(["evaluate", "--model_path", str(model), "--label_map_path",
                 str(label_map_path), "--data_dir", str(data), "--quiet"]) == 0
    assert "mAP@0.5:      1.0000" in capsys.readouterr().out
    assert (tmp_path / "eval_data.json").is_file()  # beside the model file
    with pytest.raises(SystemExit):
        main(["evaluate", "--model_path", str(model), "--saved_model_path", str(model),
              "--label_map_path", str(label_map_path), "--data_dir", str(data)])
    assert "not allowed with argument" in capsys.readouterr().err
