"""The SavedModel runner adapts to each input signature and refuses unusable ones."""

from __future__ import annotations

import numpy as np
import pytest

from auto_annotate.errors import ModelError
from auto_annotate.model import SavedModelDetector
from tests.helpers import BLUE, RED, build_color_model, draw

# non-square, two sizes: red at x 10-30, y 5-25; blue at x 50-100, y 40-70
BIG = draw((120, 80), [(RED, (10, 5, 30, 25)), (BLUE, (50, 40, 100, 70))])
SMALL = draw((60, 90), [(RED, (2, 60, 40, 88))])


@pytest.mark.parametrize("variant", ["dynamic", "batch1", "float", "fixed_size",
                                     "fixed_batch", "string"])
def test_each_signature_variant_finds_the_boxes(models, variant):
    detector = SavedModelDetector(models[variant], batch_size=4)
    big, small, big_again = detector.predict([BIG, SMALL, BIG])
    # fixed size: letterboxed to 96 x 64 (scale 0.53 for BIG); one input pixel is ~1.9 image
    # pixels, and the resize blurs the patch edges
    tolerance = 2.0 if variant == "fixed_size" else 1e-3
    np.testing.assert_allclose(big.boxes, [[10, 5, 30, 25], [50, 40, 100, 70]], atol=tolerance)
    np.testing.assert_allclose(big.scores, [0.9, 0.7], atol=1e-6)
    np.testing.assert_array_equal(big.class_ids, [1, 2])
    np.testing.assert_allclose(small.boxes, [[2, 60, 40, 88]], atol=tolerance)
    np.testing.assert_allclose(big_again.boxes, big.boxes)


@pytest.mark.parametrize("variant,max_batch", [
    ("dynamic", 4), ("batch1", 1), ("fixed_batch", 3), ("string", 4)])
def test_batch_size_follows_the_signature(models, variant, max_batch):
    assert SavedModelDetector(models[variant], batch_size=4).max_batch == max_batch


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_fixed_size_models_get_letterboxed_images(models, tmp_path, dtype):
    """Not stretched: the image keeps its aspect ratio, the rest is Model Garden's mean."""
    from auto_annotate.letterbox import letterbox_image

    path = models["fixed_size"] if dtype == "uint8" else build_color_model(
        tmp_path / "float", dtype="float32", size_hw=(96, 64))
    detector = SavedModelDetector(path, batch_size=4)
    seen = []
    run = detector._run
    detector._run = lambda batch: seen.extend(batch) or run(batch)
    detector.predict([BIG, SMALL])
    boxes = []
    for image, given in zip([BIG, SMALL], seen, strict=True):
        expected, box = letterbox_image(image, (96, 64), dtype)
        assert given.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(given, expected)
        boxes.append(box)
    assert boxes[0].scaled_hw == (43, 64)  # BIG, 120 x 80 (w x h): 43 rows, padding below
    assert boxes[1].scaled_hw == (96, 64)  # SMALL, 60 x 90: the input's own aspect ratio


def test_fixed_size_models_batch_any_image_sizes(models):
    fixed = SavedModelDetector(models["fixed_size"], batch_size=4)
    dynamic = SavedModelDetector(models["dynamic"], batch_size=4)
    assert fixed.batch_key((10, 20)) == fixed.batch_key((30, 40))
    assert dynamic.batch_key((10, 20)) != dynamic.batch_key((30, 40))


@pytest.mark.parametrize("kwargs,problem", [
    ({"dtype": "int32"}, "found input 'input_tensor' int32"),
    ({"outputs": ("detection_boxes", "detection_scores")}, "lack \\['detection_classes'\\]"),
    ({"signature": "detect"}, "no 'serving_default' signature \\(found: \\['detect'\\]\\)"),
    ({"size_hw": (96, None)}, "both be fixed"),
])
def test_unusable_signatures_are_refused_up_front(tmp_path, kwargs, problem):
    path = build_color_model(tmp_path / "bad", **kwargs)
    with pytest.raises(ModelError, match=problem) as error:
        SavedModelDetector(path)
    assert "expected" in str(error.value) or "found" in str(error.value)


def test_two_inputs_are_refused(tmp_path):
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(lambda a, b: {"detection_boxes": a, "detection_scores": b,
                                         "detection_classes": b},
                           input_signature=[tf.TensorSpec([None], tf.float32)] * 2)
    tf.saved_model.save(module, str(tmp_path / "two"),
                        signatures={"serving_default": module.f.get_concrete_function()})
    with pytest.raises(ModelError, match="found inputs \\['a', 'b'\\]"):
        SavedModelDetector(tmp_path / "two")


def test_a_folder_without_a_savedmodel(tmp_path):
    with pytest.raises(ModelError, match="not a SavedModel directory"):
        SavedModelDetector(tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot load SavedModel"):
        SavedModelDetector(tmp_path)


def _model_with_a_variable(path):
    """A SavedModel whose score is a variable: one box over the whole image."""
    import tensorflow as tf

    module = tf.Module()
    module.score = tf.Variable(0.8)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def detect(input_tensor):
        count = tf.shape(input_tensor)[0]
        score = module.score * tf.ones([count, 1])
        return {"detection_boxes": tf.tile([[[0.0, 0.0, 1.0, 1.0]]], [count, 1, 1]),
                "detection_scores": score, "detection_classes": tf.ones([count, 1]),
                "num_detections": tf.ones([count])}

    module.detect = detect
    tf.saved_model.save(module, str(path), signatures={"serving_default": detect})
    return path


def test_the_frozen_signature_has_the_variables_as_constants(tmp_path):
    import tensorflow as tf

    from auto_annotate.model import frozen_function, load_signature

    path = _model_with_a_variable(tmp_path / "m")
    loaded, function, _ = load_signature(path)
    frozen = frozen_function(function, path)
    image = tf.constant(BIG[None])
    assert sorted(frozen(input_tensor=image)) == sorted(function(input_tensor=image))
    loaded.score.assign(0.3)  # the live graph reads the variable, the frozen one does not
    assert function(input_tensor=image)["detection_scores"].numpy()[0, 0] == pytest.approx(0.3)
    assert frozen(input_tensor=image)["detection_scores"].numpy()[0, 0] == pytest.approx(0.8)
    frozen_boxes = SavedModelDetector(path).predict([BIG])[0]
    plain_boxes = SavedModelDetector(path, freeze=False).predict([BIG])[0]
    np.testing.assert_allclose(frozen_boxes.boxes, plain_boxes.boxes)
    np.testing.assert_allclose(frozen_boxes.boxes, [[0, 0, 120, 80]])


@pytest.mark.parametrize("freeze", [True, False])
def test_a_frozen_detector_lets_the_variables_go(tmp_path, monkeypatch, freeze):
    """The frozen graph has its own copy of the weights: the loaded SavedModel (and its
    variables) is freed; a graph run with its variables keeps it."""
    import gc
    import weakref

    from auto_annotate import model

    path = _model_with_a_variable(tmp_path / "m")
    loaded, real = [], model.load_signature

    def remembered(*args):
        result = real(*args)
        loaded.append(weakref.ref(result[0]))
        return result
    monkeypatch.setattr(model, "load_signature", remembered)
    detector = SavedModelDetector(path, freeze=freeze)
    gc.collect()
    assert (loaded[0]() is None) == freeze
    assert detector.predict([BIG])[0].scores == pytest.approx([0.8])


def test_a_graph_that_cannot_be_frozen_runs_as_it_is(tmp_path, monkeypatch, caplog):
    from tensorflow.python.framework import convert_to_constants

    def refuse(function):
        raise ValueError("cannot convert this op")

    monkeypatch.setattr(convert_to_constants, "convert_variables_to_constants_v2", refuse)
    path = _model_with_a_variable(tmp_path / "m")
    with caplog.at_level("INFO", logger="auto_annotate.model"):
        detector = SavedModelDetector(path)
    assert detector.predict([BIG])[0].scores == pytest.approx([0.8])
    assert "cannot freeze it: ValueError: cannot convert this op" in caplog.text


def test_a_graph_with_a_lookup_table_runs_unfrozen_with_its_detections(tmp_path, caplog):
    """Freezing keeps a table as a resource input: the detector runs the graph as it is."""
    import tensorflow as tf

    module = tf.Module()
    module.table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant([0], tf.int64), tf.constant([0.6])), 0.0)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def detect(input_tensor):
        count = tf.shape(input_tensor)[0]
        score = module.table.lookup(tf.zeros([count, 1], tf.int64))
        return {"detection_boxes": tf.tile([[[0.0, 0.0, 1.0, 1.0]]], [count, 1, 1]),
                "detection_scores": score, "detection_classes": tf.ones([count, 1])}

    module.detect = detect
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": detect})
    with caplog.at_level("INFO", logger="auto_annotate.model"):
        detector = SavedModelDetector(tmp_path / "m")
    assert "cannot freeze it" in caplog.text
    assert detector.predict([BIG])[0].scores == pytest.approx([0.6])
