"""``tsoda export --format tflite``: the TFLite contract, its detections against the
SavedModel's on letterboxed non-square images, quantized exports and their self-check."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from auto_annotate import load_detector
from auto_annotate.detections import Detections
from auto_annotate.letterbox import letterbox_image
from auto_annotate.litert import TFLiteDetector
from tests.test_export import _broken_checkpoint
from tests.tsoda_helpers import write_tiny_config
from tsoda.errors import TrainingError
from tsoda.training import tflite_check

OUTPUTS = {"detection_boxes", "detection_scores", "detection_classes", "num_detections"}


def _detections(rows) -> Detections:
    """Detections from (xmin, ymin, xmax, ymax, score, class) rows."""
    rows = np.array(rows, np.float32).reshape(-1, 6)
    return Detections(rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64))


@pytest.mark.parametrize("reference,candidate,expected", [
    ([[0, 0, 10, 10, .9, 1]], [[0, 0, 10, 10, .9, 1]], (1, 1, 0, 1.0, 0.0)),
    ([[0, 0, 10, 10, .9, 1]], [[0, 0, 10, 9, .85, 1]], (1, 1, 0, 0.9, 0.05)),
    ([[0, 0, 10, 10, .9, 1]], [[0, 0, 10, 10, .9, 2]], (1, 0, 1, None, None)),
    ([[0, 0, 10, 10, .9, 1]], [[20, 20, 30, 30, .9, 1]], (1, 0, 1, None, None)),
    ([[0, 0, 10, 10, .29, 1]], [[0, 0, 10, 10, .31, 1]], (0, 0, 0, 1.0, 0.02)),
    ([[0, 0, 10, 10, .1, 1]], [[0, 0, 10, 10, .2, 1]], (0, 0, 0, None, None)),
    ([[0, 0, 10, 10, .9, 1], [0, 0, 10, 10, .8, 1]], [[0, 0, 10, 10, .9, 1]],
     (2, 1, 0, 1.0, 0.0)),
    ([], [[0, 0, 10, 10, .9, 1]], (0, 0, 1, None, None)),
    ([[0, 0, 10, 10, .9, 1]], [], (1, 0, 0, None, None)),
], ids=["same", "close", "other_class", "elsewhere", "across_threshold", "both_low",
        "one_missing", "extra", "none"])
def test_pair_up(reference, candidate, expected):
    pairs = tflite_check.pair_up(_detections(reference), _detections(candidate))
    count, matched, extra, iou, difference = expected
    assert (pairs.reference, pairs.matched, pairs.extra) == (count, matched, extra)
    assert min(pairs.ious, default=None) == (None if iou is None else pytest.approx(iou))
    assert max(pairs.score_differences, default=None) == \
        (None if difference is None else pytest.approx(difference, abs=1e-6))


def test_a_float32_model_beyond_tolerance_is_a_loud_warning(caplog):
    from tsoda.training.export_tflite import _log

    check = tflite_check.SelfCheck("none", images=5, reference=4, matched=3, extra=1,
                                   min_iou=0.8, max_score_difference=0.05)
    with caplog.at_level(logging.INFO):
        _log(check)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "self-check: 3 of 4 detections matched (min IoU 0.800" in record.message
    for problem in ("1 of 4 detections unmatched", "1 extra", "min IoU 0.800 < 0.9",
                    "max score difference 0.0500 > 0.01"):
        assert problem in record.message
    quantized = tflite_check.SelfCheck("int8", 5, 4, 4, 0, 0.8, 0.05)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _log(quantized)
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def _tiny_config(tmp_path: Path, records: str) -> Path:
    label_map = tmp_path / "label_map.pbtxt"
    label_map.write_text('item { id: 1 name: "flame" }\n')
    return write_tiny_config(tmp_path / "tiny.config", records, label_map)


def test_int8_without_training_records_is_one_clear_error(tmp_path, capsys):
    from tsoda.cli import main

    config = _tiny_config(tmp_path, str(tmp_path / "missing" / "train.record*"))
    _broken_checkpoint(tmp_path / "model")  # never read: the records are checked first
    assert main(["export", "--pipeline_config_path", str(config), "--model_dir",
                 str(tmp_path / "model"), "--output_dir", str(tmp_path / "out"),
                 "--format", "tflite", "--quantize", "int8", "--quiet"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"error: {tmp_path / 'missing' / 'train.record*'}: no such training "
                    "TFRecord file (train_input_reader.tf_record_input_reader.input_path)")
    assert not (tmp_path / "out").exists()


def test_quantize_needs_the_tflite_format(tmp_path, capsys):
    from tsoda.cli import main

    assert main(["export", "--pipeline_config_path", "c", "--model_dir", "m", "--output_dir",
                 str(tmp_path), "--quantize", "fp16", "--quiet"]) == 2
    assert "--quantize applies to --format tflite only" in capsys.readouterr().err


def test_a_failing_tflite_export_keeps_the_previous_model(tmp_path):
    from tsoda.training.export_tflite import export_tflite

    config = _tiny_config(tmp_path, "unused")
    _broken_checkpoint(tmp_path / "model")
    output = tmp_path / "out"
    output.mkdir()
    previous = {"model.tflite": b"the model in use", "model.tflite.check.json": b"{}"}
    for name, data in previous.items():
        (output / name).write_bytes(data)
    with pytest.raises(TrainingError, match=r"TFLite export failed.*previous model.tflite "
                                            r"is kept"):
        export_tflite(config, tmp_path / "model", output)
    assert {p.name: p.read_bytes() for p in output.iterdir()} == previous  # no leftovers


def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path))


@pytest.fixture(scope="module")
def tflite_export(tiny_detector, tmp_path_factory):
    """The tiny detector exported as float32 TFLite and as a SavedModel."""
    from tsoda.training.export import export
    from tsoda.training.export_tflite import export_tflite

    config, model_dir, _ = tiny_detector
    output = tmp_path_factory.mktemp("tflite_export")
    (output / "model.tflite").write_bytes(b"an older model")
    return export_tflite(config, model_dir, output), export(config, model_dir, output)


@pytest.mark.slow
def test_the_tflite_model_has_the_contract(tflite_export, tiny_detector):
    from auto_annotate.images import decode_image, list_images

    result, _ = tflite_export
    assert sorted(p.name for p in result.path.parent.iterdir()) == [
        "label_map.pbtxt", "model.tflite", "model.tflite.check.json", "params.yaml",
        "pipeline.config", "saved_model"]
    interpreter = _interpreter(result.path)
    assert interpreter.get_signature_list() == {"serving_default": {
        "inputs": ["input_tensor"], "outputs": sorted(OUTPUTS)}}
    runner = interpreter.get_signature_runner("serving_default")
    (spec,) = runner.get_input_details().values()
    assert spec["dtype"] == np.float32 and spec["shape"].tolist() == [1, 64, 128, 3]
    assert result.path.read_bytes() != b"an older model"
    image = decode_image(next(iter(list_images(tiny_detector[2])))).upright
    frame, _ = letterbox_image(image, (64, 128))
    outputs = runner(input_tensor=frame[None])
    count = outputs["detection_scores"].shape[1]
    assert {key: value.shape for key, value in outputs.items()} == {
        "detection_boxes": (1, count, 4), "detection_scores": (1, count),
        "detection_classes": (1, count), "num_detections": (1,)}
    assert all(value.dtype == np.float32 for value in outputs.values())
    valid = int(outputs["num_detections"][0])
    assert valid > 0 and set(outputs["detection_classes"][0, :valid]) == {1.0}  # label ids
    check = json.loads((result.path.parent / "model.tflite.check.json").read_text())
    assert check["quantize"] == "none" and check["within_tolerance"] and check["reference"] > 0


@pytest.mark.slow
def test_tflite_on_letterboxed_images_detects_what_the_saved_model_does(tflite_export,
                                                                        tiny_detector):
    from auto_annotate.images import decode_image, list_images
    from auto_annotate.model import SavedModelDetector

    result, saved_model = tflite_export
    images = [decode_image(path).upright for path in list_images(tiny_detector[2])]
    images += [np.ascontiguousarray(image.transpose(1, 0, 2)) for image in images]  # portrait
    assert {image.shape[:2] for image in images} == {(120, 160), (160, 120)}
    reference, candidate = SavedModelDetector(saved_model), load_detector(result.path)
    assert isinstance(candidate, TFLiteDetector)  # auto_annotate's own .tflite path
    check = tflite_check.self_check(lambda image: candidate.predict([image])[0],
                                    lambda image: reference.predict([image])[0], images, "none")
    assert check.reference >= 8, check.format()  # the red patches, found by both
    assert check.within_tolerance, check.problems()


@pytest.mark.slow
def test_int8_calibrates_on_training_images_letterboxed_exactly_as_in_training(
        tiny_detector, tmp_path, monkeypatch):
    """Not with OpenCV's faster resize: int8 ranges react to the last digits of their input
    (on flames, calibrating on OpenCV's frames cost 0.013 mAP@0.5)."""
    from tsoda.config.pipeline import load_pipeline_config
    from tsoda.training import export_tflite as module

    class Captured(Exception):
        pass

    frames = []

    def capture(serving, quantize, calibration=None):
        frames.extend(calibration())
        raise Captured

    monkeypatch.setattr(module, "convert", capture)
    config, model_dir, _ = tiny_detector
    with pytest.raises(Captured):
        module.export_tflite(config, model_dir, tmp_path, quantize="int8")
    images = list(module.training_images(load_pipeline_config(config), config))
    assert len(frames) == len(images) == 8
    for frame, image in zip(frames, images, strict=True):
        exact, _ = letterbox_image(image, (64, 128), use_opencv=False)
        np.testing.assert_array_equal(frame, exact)


@pytest.mark.slow
@pytest.mark.parametrize("quantize,stored", [("fp16", np.float16), ("int8", np.int8)])
def test_quantized_exports_run_and_report_their_self_check(tiny_detector, tmp_path, quantize,
                                                          stored):
    from tsoda.training.export_tflite import export_tflite

    config, model_dir, _ = tiny_detector
    result = export_tflite(config, model_dir, tmp_path, quantize=quantize)
    interpreter = _interpreter(result.path)
    assert stored in {detail["dtype"] for detail in interpreter.get_tensor_details()}
    runner = interpreter.get_signature_runner("serving_default")
    (spec,) = runner.get_input_details().values()
    assert spec["dtype"] == np.float32  # the float client works unchanged
    assert {v["dtype"] for v in runner.get_output_details().values()} == {np.float32}
    check = json.loads((tmp_path / "model.tflite.check.json").read_text())
    assert check["quantize"] == quantize and check["skipped"] is None
    assert check["reference"] > 0 and check["matched"] == check["reference"], check["summary"]
    assert check["min_iou"] > 0.5 and check["max_score_difference"] < 0.2


@pytest.mark.slow
def test_without_training_records_the_self_check_is_skipped_with_a_warning(
        tiny_detector, tmp_path, caplog):
    from tsoda.training.export_tflite import export_tflite

    config, model_dir, _ = tiny_detector
    moved = tmp_path / "elsewhere.config"
    moved.write_text(config.read_text().replace(str(config.parent / "train.record*"),
                                                str(tmp_path / "gone.record")))
    with caplog.at_level(logging.WARNING):
        result = export_tflite(moved, model_dir, tmp_path / "out")
    assert result.check.skipped and "gone.record: no such training TFRecord" in \
        result.check.skipped
    assert any("self-check skipped" in r.message for r in caplog.records)
    assert json.loads((tmp_path / "out" / "model.tflite.check.json").read_text())["skipped"]


@pytest.mark.slow
def test_background_scores_never_become_detections(tiny_detector, tmp_path):
    """Model Garden's TFLite path hands TFLite's NMS op the background column as a class
    of its own. With background logits raised to 3 (score 0.95) everywhere, the SavedModel
    (which drops that column) detects as before, and so must the TFLite model."""
    import tensorflow as tf

    from tsoda.config.experiment import build_experiment
    from tsoda.config.pipeline import load_pipeline_config
    from tsoda.training.export import latest_checkpoint
    from tsoda.training.export_tflite import export_tflite
    from tsoda.training.train import build_model_and_task

    config, model_dir, _ = tiny_detector
    model = build_model_and_task(build_experiment(load_pipeline_config(config), config))[1]
    tf.train.Checkpoint(model=model).read(latest_checkpoint(model_dir)).expect_partial()
    (bias,) = [v for v in model.head.variables if v.name.endswith("/scores/bias:0")]
    values = bias.numpy()
    values[::2] = 3.0  # channels are (anchor, class) pairs; class 0 is the background
    bias.assign(values)
    tf.train.Checkpoint(model=model).write(str(tmp_path / "model" / "ckpt-1"))
    (tmp_path / "model" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    check = export_tflite(config, tmp_path / "model", tmp_path / "out").check
    assert check.reference > 0 and check.within_tolerance, check.format()


@pytest.mark.slow
def test_the_command_shows_our_lines_not_the_converters(tiny_detector, tmp_path):
    import subprocess
    import sys

    config, model_dir, _ = tiny_detector
    done = subprocess.run(
        [sys.executable, "-m", "tsoda", "export", "--pipeline_config_path", str(config),
         "--model_dir", str(model_dir), "--output_dir", str(tmp_path), "--format", "tflite",
         "--quiet"], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert "self-check:" in done.stdout
    noise = [line for line in done.stderr.splitlines()
             if (line[:1] in "IWE" and line[1:5].isdigit()) or "absl" in line
             or "(letterboxed)" in line]  # the self-check's temporary detector
    assert not noise, done.stderr
