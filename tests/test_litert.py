""".tflite models: letterboxed input, boxes in the LabelImg frame, refusals up front.

The colour model converted to ``.tflite`` has a fixed 64 x 96 (height x width) input and
finds the colour patches in it, so its boxes are right only if the image was letterboxed
as Model Garden does it and the boxes were mapped back through the letterbox.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from auto_annotate import ModelError, load_detector, voc
from auto_annotate import boxes as box_ops
from auto_annotate.cli import main
from auto_annotate.litert import TFLiteDetector
from tests.helpers import (
    BLUE,
    RED,
    build_color_model,
    build_color_tflite,
    build_postprocess_tflite,
    draw,
    save,
)

pytest.importorskip("ai_edge_litert.interpreter", reason="the litert extra is not installed")

# Scale 0.5 exactly, so bilinear halving mixes no patch edge and boxes come back exact.
NARROW = draw((150, 128), [(RED, (10, 6, 30, 26)), (BLUE, (100, 40, 150, 128))])  # pad right
WIDE = draw((192, 100), [(RED, (10, 6, 30, 26)), (BLUE, (50, 40, 100, 70))])  # pad below
EXPECTED = {"narrow": [[10, 6, 30, 26], [100, 40, 150, 128]],
            "wide": [[10, 6, 30, 26], [50, 40, 100, 70]]}
# A true portrait at scale 0.32: one input pixel is ~3 image pixels
TALL = draw((80, 200), [(RED, (10, 100, 30, 140))])


@pytest.fixture(scope="module")
def tflite(tmp_path_factory):
    root = tmp_path_factory.mktemp("tflite")
    return {"float": build_color_tflite(root / "float.tflite"),
            "uint8": build_color_tflite(root / "uint8.tflite", dtype="uint8", batch=None),
            "no_signature": build_color_tflite(root / "plain.tflite", signature=False),
            "postprocess": build_postprocess_tflite(root / "postprocess.tflite")}


@pytest.mark.parametrize("variant", ["float", "uint8", "no_signature"])
def test_boxes_come_back_in_the_image_frame_for_non_square_images(tflite, variant):
    detector = TFLiteDetector(tflite[variant], batch_size=4)
    narrow, wide, tall = detector.predict([NARROW, WIDE, TALL])
    np.testing.assert_allclose(narrow.boxes, EXPECTED["narrow"], atol=1e-3)
    np.testing.assert_allclose(wide.boxes, EXPECTED["wide"], atol=1e-3)
    np.testing.assert_allclose(tall.boxes, [[10, 100, 30, 140]], atol=3.2)
    np.testing.assert_allclose(narrow.scores, [0.9, 0.7], atol=1e-6)
    np.testing.assert_array_equal(narrow.class_ids, [1, 2])


def test_outputs_are_cut_to_num_detections(tflite):
    (only_red,) = TFLiteDetector(tflite["float"]).predict([TALL])  # the model pads to 3
    assert len(only_red) == 1 and only_red.scores.tolist() == pytest.approx([0.9])


def test_the_detector_runs_one_image_per_call_with_any_sizes_in_a_group(tflite):
    detector = TFLiteDetector(tflite["float"], batch_size=8)
    assert detector.max_batch == 8 and detector.spec.size_hw == (64, 96)
    assert detector.batch_key((10, 20)) == detector.batch_key((300, 40))


def test_groups_run_side_by_side_on_one_interpreter_per_core_in_input_order(tflite, caplog):
    images = [NARROW, WIDE, TALL, WIDE, NARROW]  # an odd count: the copies get 3 and 2
    with caplog.at_level("INFO", logger="auto_annotate.litert"):
        side = TFLiteDetector(tflite["float"], batch_size=4, num_threads=2)
        single = TFLiteDetector(tflite["float"], batch_size=1, num_threads=2)
    assert "2 interpreter(s) side by side" in caplog.text
    assert "1 interpreter(s) side by side" in caplog.text
    for got, expected in zip(side.predict(images), single.predict(images), strict=True):
        np.testing.assert_array_equal(got.boxes, expected.boxes)
        np.testing.assert_array_equal(got.scores, expected.scores)


def test_a_lone_image_runs_on_all_threads_and_a_failing_copy_fails_its_group_only(tflite):
    detector = TFLiteDetector(tflite["float"], batch_size=4, num_threads=2)
    used, outputs = [], detector._outputs

    def recording(model_input, copy=0):
        used.append(copy)
        if model_input[0, 0, 0] == 0:  # the black image below (the others are grey there)
            raise RuntimeError("this copy failed")
        return outputs(model_input, copy)

    detector._outputs = recording
    detector.predict([NARROW])
    assert used == [0]  # the interpreter with both threads
    used.clear()
    detector.predict([NARROW, WIDE, TALL])
    assert len(used) == 3 and set(used) <= {1, 2}  # the single-threaded copies
    black = np.zeros((50, 60, 3), np.uint8)
    with pytest.raises(RuntimeError, match="this copy failed"):
        detector.predict([NARROW, black, WIDE])
    assert len(used) == 6  # the error came after every image of the group had run
    (narrow,) = detector.predict([NARROW])  # every copy finished; the detector still works
    np.testing.assert_allclose(narrow.boxes, EXPECTED["narrow"], atol=1e-3)


def test_predict_from_several_threads_at_once_gives_each_its_own_detections(tflite):
    from concurrent.futures import ThreadPoolExecutor

    detector = TFLiteDetector(tflite["float"], batch_size=2, num_threads=2)
    groups = [[NARROW, WIDE], [WIDE], [NARROW, WIDE, NARROW]] * 4
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(detector.predict, groups))
    for group, detections in zip(groups, results, strict=True):
        for image, found in zip(group, detections, strict=True):
            expected = EXPECTED["narrow" if image is NARROW else "wide"]
            np.testing.assert_allclose(found.boxes, expected, atol=1e-3)


def test_no_interpreter_ever_runs_two_images_at_once(tflite):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    detector = TFLiteDetector(tflite["float"], batch_size=4, num_threads=2)
    running, overlaps, lock, outputs = set(), [], threading.Lock(), detector._outputs

    def guarded(model_input, copy=0):
        with lock:
            overlaps.append(copy in running)
            running.add(copy)
        try:
            threading.Event().wait(0.002)  # a wider window for a second caller to collide
            return outputs(model_input, copy)
        finally:
            with lock:
                running.discard(copy)

    detector._outputs = guarded
    groups = [[NARROW, WIDE, TALL, WIDE], [WIDE], [NARROW, WIDE]] * 4
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(detector.predict, groups))
        handles = [detector.submit(group) for group in groups]
        [handle.result() for handle in handles]
    assert len(overlaps) == 2 * sum(map(len, groups)) and not any(overlaps)


def test_a_detector_nobody_holds_is_freed_with_its_threads(tflite):
    import gc
    import threading
    import weakref

    before = threading.active_count()
    detector = TFLiteDetector(tflite["float"], batch_size=4, num_threads=2)
    detector.predict([NARROW, WIDE, TALL, WIDE])  # starts the pool's two threads
    gone = weakref.ref(detector)
    del detector
    gc.collect()
    assert gone() is None
    for _ in range(100):  # the pool's threads see their executor gone and end
        if threading.active_count() <= before:
            break
        threading.Event().wait(0.05)
    assert threading.active_count() <= before


def test_submit_returns_at_once_and_gives_what_predict_gives(tflite):
    import threading

    detector = TFLiteDetector(tflite["float"], batch_size=4, num_threads=2)
    expected = detector.predict([NARROW, WIDE, TALL])
    release, outputs = threading.Event(), detector._outputs

    def held(model_input, copy=0):
        release.wait(timeout=10)
        return outputs(model_input, copy)

    detector._outputs = held
    first = detector.submit([NARROW, WIDE, TALL])
    second = detector.submit([WIDE, NARROW])  # queued behind the first, not refused
    assert not first.done() and not second.done()
    release.set()
    for got, want in zip(first.result(), expected, strict=True):
        np.testing.assert_array_equal(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_allclose(second.result()[1].boxes, EXPECTED["narrow"], atol=1e-3)
    assert first.done() and second.done()


def test_letterboxing_runs_in_the_decoding_threads_with_the_same_boxes(tflite, tmp_path):
    """predict_stream letterboxes in its decoding workers (Detector.prepare), off the
    model's thread; the detections equal letterboxing in predict."""
    import threading

    from auto_annotate import predict_stream
    from auto_annotate.predict import Prediction

    detector = TFLiteDetector(tflite["float"], batch_size=2)
    threads, prepare = set(), detector.prepare

    def recording_prepare(image):
        threads.add(threading.current_thread().name)
        return prepare(image)

    detector.prepare = recording_prepare
    tasks = []
    for name, image in (("narrow", NARROW), ("wide", WIDE), ("tall", TALL)):
        save(tmp_path / f"{name}.png", image)
        tasks.append(type("Task", (), {"image": tmp_path / f"{name}.png"})())
    outcomes = list(predict_stream(tasks, detector, workers=2))
    assert all(isinstance(o, Prediction) for o in outcomes)
    assert threads and threading.current_thread().name not in threads
    direct = TFLiteDetector(tflite["float"]).predict([NARROW, WIDE, TALL])
    for outcome, expected in zip(outcomes, direct, strict=True):
        np.testing.assert_allclose(outcome.detections.boxes, expected.boxes, atol=1e-4)
        np.testing.assert_array_equal(outcome.detections.scores, expected.scores)


def test_an_image_the_detector_cannot_prepare_fails_alone(tflite, tmp_path):
    from auto_annotate import predict_stream
    from auto_annotate.predict import FailedImage, Prediction

    detector = TFLiteDetector(tflite["float"])
    prepare = detector.prepare
    detector.prepare = lambda image: prepare(image) if image.shape[1] != 192 else 1 / 0
    tasks = []
    for name, image in (("narrow", NARROW), ("wide", WIDE)):
        save(tmp_path / f"{name}.png", image)
        tasks.append(type("Task", (), {"image": tmp_path / f"{name}.png"})())
    narrow, wide = predict_stream(tasks, detector)
    assert isinstance(narrow, Prediction)
    assert isinstance(wide, FailedImage) and "cannot prepare it for the model" in wide.reason


def test_a_classic_postprocess_op_model_is_refused_with_the_reason(tflite):
    # its outputs would give boxes, but its class numbering and input scaling are unknown
    with pytest.raises(ModelError, match=r"postprocess\.tflite: outputs .* lack .*unnamed "
                                         r"from a TFLite_Detection_PostProcess op"):
        TFLiteDetector(tflite["postprocess"])


def test_tta_works_with_a_tflite_model(tflite):
    from auto_annotate.tta import TtaDetector

    plain = TFLiteDetector(tflite["float"])
    (fused,) = TtaDetector(plain, ("flip",)).predict([NARROW])
    np.testing.assert_allclose(fused.boxes, EXPECTED["narrow"], atol=1e-3)
    np.testing.assert_allclose(fused.scores, [0.9, 0.7], atol=1e-6)  # both views agree


def _unnamed_outputs_model(path):
    import tensorflow as tf

    module = tf.Module()
    module.detect = tf.function(
        lambda images: {f"output_{i}": tf.reduce_mean(images, axis=[1, 2]) for i in range(4)},
        input_signature=[tf.TensorSpec([1, 64, 96, 3], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.detect.get_concrete_function()], module)
    path.write_bytes(converter.convert())
    return path


@pytest.mark.parametrize("build,problem", [
    (lambda p: build_color_tflite(p, dtype="int32"),
     r"found input 'images' int32 \[1, 64, 96, 3\]"),
    (lambda p: build_color_tflite(p, rank=3), r"found input 'images' float32 \[64, 96, 3\]"),
    (lambda p: build_color_tflite(p, size_hw=None), r"float32 \[1, -1, -1, 3\]"),
    (lambda p: build_color_tflite(p, outputs=("detection_boxes", "detection_scores")),
     r"lack \['detection_classes'\]; expected signature"),
    (_unnamed_outputs_model, r"lack \['detection_boxes', 'detection_scores', 'detection_c"),
    (lambda p: p.write_bytes(b"not a flatbuffer at all" * 10), r"cannot load \.tflite model"),
    (lambda p: p.write_bytes(b""), r"cannot load \.tflite model"),
])
def test_a_tflite_of_the_wrong_contract_is_refused_up_front(tmp_path, build, problem):
    path = tmp_path / "bad.tflite"
    build(path)
    with pytest.raises(ModelError, match=problem) as error:
        load_detector(path)
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert "expected" in message or "cannot load" in message


def test_a_truncated_tflite_is_refused(tmp_path, tflite):
    path = tmp_path / "cut.tflite"
    path.write_bytes(tflite["float"].read_bytes()[:200])
    with pytest.raises(ModelError, match=r"cannot load \.tflite model"):
        TFLiteDetector(path)


def test_without_litert_the_error_says_which_extra_to_install(tmp_path, tflite, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ModelError, match=r"pip install '\.\[litert\]'"):
        load_detector(tflite["float"])


def test_load_detector_picks_the_runner_by_the_path(tmp_path, tflite):
    from auto_annotate.model import SavedModelDetector

    assert isinstance(load_detector(tflite["float"]), TFLiteDetector)
    saved = build_color_model(tmp_path / "saved")
    assert isinstance(load_detector(saved, 2), SavedModelDetector)
    (tmp_path / "empty").mkdir()
    (tmp_path / "model.onnx").write_bytes(b"x")
    for path, problem in [(tmp_path / "empty", "folder without saved_model.pb"),
                          (tmp_path / "model.onnx", "not a model; expected a SavedModel"),
                          (saved / "saved_model.pb", r"not a model \(give its folder\)"),
                          (tmp_path / "gone.tflite", "model does not exist")]:
        with pytest.raises(ModelError, match=problem):
            load_detector(path)


def _labelled(xml):
    annotation = voc.read_voc(xml)
    return annotation, [(o.name, voc.disk_box(o.box, annotation.width, annotation.height))
                        for o in annotation.objects]


def test_the_cli_labels_non_square_and_exif_rotated_images(tflite, label_map_path, tmp_path):
    imgs = tmp_path / "imgs"
    save(imgs / "narrow.png", NARROW)
    save(imgs / "wide.png", WIDE)
    stored = draw((150, 100), [(RED, (10, 20, 60, 50))])
    save(imgs / "rotated.jpg", stored, orientation=6, quality=98)
    assert main(["--model_path", str(tflite["float"]), "--label_map_path",
                 str(label_map_path), "--imgs_path", str(imgs), "--quiet"]) == 0
    _, narrow = _labelled(imgs / "narrow.xml")
    assert narrow == [("flame", (11, 7, 30, 26)), ("smoke", (101, 41, 150, 128))]
    annotation, rotated = _labelled(imgs / "rotated.xml")
    assert (annotation.width, annotation.height) == (100, 150)  # upright, as LabelImg shows
    upright = box_ops.stored_to_upright(np.array([[10, 20, 60, 50]]), (100, 150), 6)[0]
    expected = voc.disk_box(upright, 100, 150)
    assert rotated[0][0] == "flame"
    assert np.abs(np.subtract(rotated[0][1], expected)).max() <= 3  # scale 0.43, JPEG


def test_the_api_takes_a_tflite_and_the_manifest_names_its_bytes(tflite, label_map_path,
                                                                 tmp_path):
    from auto_annotate import AutoAnnotate

    imgs = tmp_path / "imgs"
    save(imgs / "wide.png", WIDE)
    copy = tmp_path / "renamed.tflite"
    copy.write_bytes(tflite["float"].read_bytes())
    digest = "sha256:" + hashlib.sha256(copy.read_bytes()).hexdigest()
    job = AutoAnnotate(copy, label_map_path, imgs, progress=False)
    assert job.options.model_id == digest  # the file's sha256sum, whatever its name
    assert AutoAnnotate(model_path=tflite["float"], label_map_path=label_map_path,
                        imgs_path=imgs).options.model_id == digest
    assert job.generate_annotations().annotated == 1
    _, wide = _labelled(imgs / "wide.xml")
    assert wide == [("flame", (11, 7, 30, 26)), ("smoke", (51, 41, 100, 70))]
    old_name = AutoAnnotate(saved_model_path=copy, label_map_path=label_map_path,
                            imgs_path=imgs)
    assert old_name.model_path == old_name.saved_model_path == copy
    for both_or_neither in ({"model_path": copy, "saved_model_path": copy}, {}):
        with pytest.raises(ValueError, match="exactly one of them"):
            AutoAnnotate(label_map_path=label_map_path, imgs_path=imgs, **both_or_neither)


def test_the_cli_wants_exactly_one_model_flag(tflite, label_map_path, tmp_path, capsys):
    common = ["--label_map_path", str(label_map_path), "--imgs_path", str(tmp_path)]
    with pytest.raises(SystemExit) as both:
        main(["--model_path", "a", "--saved_model_path", "b", *common])
    assert both.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(common)
    assert "one of the arguments --model_path --saved_model_path is required" in \
        capsys.readouterr().err
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"junk")
    assert main(["--model_path", str(bad), *common, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}: cannot load .tflite model")


def _custom_op_model(path):
    """A .tflite with an operation LiteRT does not have: it loads, but cannot run."""
    import tensorflow as tf

    def detect(images):
        unknown = tf.reduce_sum(tf.math.bessel_i1e(tf.reduce_mean(images, axis=[1, 2])))
        return {"detection_boxes": tf.zeros([1, 1, 4]) + unknown,
                "detection_scores": tf.zeros([1, 1]), "detection_classes": tf.ones([1, 1])}

    module = tf.Module()
    module.detect = tf.function(detect, input_signature=[
        tf.TensorSpec([1, 64, 96, 3], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.detect.get_concrete_function()], module)
    converter.allow_custom_ops = True
    path.write_bytes(converter.convert())
    return path


def test_a_model_that_cannot_run_is_refused_before_any_image(tmp_path):
    path = _custom_op_model(tmp_path / "custom.tflite")
    with pytest.raises(ModelError, match=r"cannot run the model \(RuntimeError: .*BesselI1e"):
        TFLiteDetector(path)


REPO = Path(__file__).resolve().parents[1]


def test_labelling_with_a_tflite_never_imports_tensorflow(tflite, label_map_path, tmp_path):
    """``python -m auto_annotate`` with a shim ``tensorflow`` package that refuses import."""
    marker = tmp_path / "tensorflow_was_imported"
    shim = tmp_path / "shim" / "tensorflow"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                      "raise ImportError('tensorflow is blocked by the test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim.parent), str(REPO)])}
    blocked = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env,
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert blocked.returncode != 0 and marker.exists()  # the shim does block TensorFlow
    marker.unlink()
    imgs = tmp_path / "imgs"
    save(imgs / "wide.png", WIDE)
    result = subprocess.run(
        [sys.executable, "-m", "auto_annotate", "--model_path", str(tflite["float"]),
         "--label_map_path", str(label_map_path), "--imgs_path", str(imgs), "--quiet"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not marker.exists()
    _, wide = _labelled(imgs / "wide.xml")
    assert wide == [("flame", (11, 7, 30, 26)), ("smoke", (51, 41, 100, 70))]
    assert result.stderr == ""  # no runtime notes (XNNPACK) on the console either


def test_native_notes_are_kept_off_the_console_and_the_rest_goes_through(capfd):
    from auto_annotate.litert import runtime_notes_hidden

    with runtime_notes_hidden():
        for line in ("W0000 00:00:1796092696.212596   11569 helpers.cc:364] Ignored output_format.",
                     "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
                     "WARNING: All log messages before absl::InitializeLog() is called are "
                     "written to STDERR", "E0000 00:00:17.5 op.cc:1] a real error"):
            os.write(2, (line + "\n").encode())
    assert capfd.readouterr().err == "E0000 00:00:17.5 op.cc:1] a real error\n"
