"""Re-exporting a SavedModel without checkpoint (tsoda/training/reexport.py) keeps its
detections."""

from __future__ import annotations

import numpy as np
import pytest

from auto_annotate.detections import Detections
from tsoda.training.reexport import compare_detections


def _detections(boxes, scores, classes) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                      np.array(classes, np.int64))


def test_compare_detections_counts_every_kind_of_difference():
    same = _detections([[0, 0, 10, 10]], [0.9], [1])
    moved = _detections([[0, 0, 10, 12]], [0.8], [2])
    comparison = compare_detections([same, same, same], [same, moved, Detections.empty()])
    assert (comparison.images, comparison.detections) == (3, (3, 2))
    assert comparison.count_mismatches == 1 and comparison.class_mismatches == 1
    assert comparison.max_box_difference == pytest.approx(2.0)
    assert comparison.max_score_difference == pytest.approx(0.1)
    assert not comparison.identical and comparison.format().startswith("DIFFERENT")
    assert compare_detections([same], [same]).identical


@pytest.mark.slow
def test_a_saved_model_reexported_through_a_checkpoint_detects_the_same(tmp_path, tiny_detector):
    from auto_annotate.images import decode_image, list_images
    from auto_annotate.model import SavedModelDetector
    from tsoda.training.export import export
    from tsoda.training.reexport import checkpoint_from_saved_model, compare_saved_models

    config, model_dir, data = tiny_detector
    first = export(config, model_dir, tmp_path / "first")
    checkpoint_from_saved_model(config, first, tmp_path / "restored")
    second = export(config, tmp_path / "restored", tmp_path / "second")
    images = [decode_image(path).upright for path in list_images(data)]
    comparison = compare_saved_models(first, second, images)
    assert comparison.identical, comparison.format()
    best = max(d.scores.max() for d in SavedModelDetector(second).predict(images))
    assert best > 0.5  # a trained model: equal scores everywhere would prove little
