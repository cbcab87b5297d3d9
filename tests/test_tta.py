"""Test-time augmentation: views mapped back exactly, fused scores that reward agreement,
tiles without half boxes, and the inner detector's batch limits kept."""

from __future__ import annotations

import numpy as np
import pytest

from auto_annotate.detections import Detections
from auto_annotate.tta import TtaDetector, fuse, views_of
from tests.helpers import BLUE, GREEN, RED, FakeColorDetector, draw


class LeftHalfDetector(FakeColorDetector):
    """Finds colour patches only in the left half of what it is shown."""

    def predict(self, images):
        found = super().predict(images)
        results = []
        for image, detections in zip(images, found, strict=True):
            keep = detections.boxes[:, 2] <= image.shape[1] / 2
            results.append(detections.select(keep))
        return results


def test_flip_maps_boxes_back_and_a_box_seen_in_one_view_gets_half_its_score():
    image = draw((120, 60), [(RED, (10, 5, 30, 25)), (BLUE, (80, 30, 100, 50))])
    [fused] = TtaDetector(LeftHalfDetector(), ("flip",)).predict([image])
    by_class = {int(c): (tuple(b), float(s)) for b, s, c in
                zip(fused.boxes, fused.scores, fused.class_ids, strict=True)}
    assert by_class[1] == ((10, 5, 30, 25), pytest.approx(0.9 / 2))  # original view only
    assert by_class[2] == ((80, 30, 100, 50), pytest.approx(0.7 / 2))  # flipped view only


def test_a_box_every_view_agrees_on_keeps_its_box_and_score():
    image = draw((120, 60), [(RED, (10, 5, 30, 25)), (BLUE, (80, 30, 100, 50))])
    [fused] = TtaDetector(FakeColorDetector(), ("flip",)).predict([image])
    assert sorted(map(tuple, fused.boxes.tolist())) == [(10, 5, 30, 25), (80, 30, 100, 50)]
    assert sorted(fused.scores.tolist()) == pytest.approx([0.7, 0.9])


def test_tiles_see_whole_boxes_only_and_count_the_views_that_could_see_them():
    # 90x60 image, tiles 60x40 at x 0/30 and y 0/20 (one patch per colour: the fake finds
    # the bounding box of each colour)
    rects = [(RED, (40, 25, 50, 35)),   # centre: in the original, the flip and all 4 tiles
             (BLUE, (2, 2, 12, 12)),    # corner: original, flip and one tile
             (GREEN, (55, 45, 66, 55))]  # cut by the inner edge x=60 of the left tiles
    image = draw((90, 60), rects)
    inner = FakeColorDetector()
    [fused] = TtaDetector(inner, ("flip", "tiles")).predict([image])
    boxes = sorted(map(tuple, fused.boxes.tolist()))
    assert boxes == sorted(tuple(float(v) for v in r) for _, r in rects)  # no half boxes
    assert sorted(fused.scores.tolist()) == pytest.approx([0.7, 0.9, 0.95])
    assert sorted(set(s for batch in inner.batches for s in batch)) == [(40, 60), (60, 90)]


def test_fusion_of_nearby_boxes_is_score_weighted():
    views = views_of((100, 100), ("flip",))
    a = Detections(np.array([[10, 10, 30, 30]]), [0.8], [1])
    b = Detections(np.array([[12, 10, 32, 30]]), [0.4], [1])
    fused = fuse([a, b], views, (100, 100))
    np.testing.assert_allclose(fused.boxes, [[10 + 2 / 3, 10, 30 + 2 / 3, 30]], rtol=1e-5)
    assert fused.scores.tolist() == pytest.approx([0.6])
    other_class = fuse([a, Detections(b.boxes, [0.4], [2])], views, (100, 100))
    assert len(other_class) == 2  # classes never fuse


def test_batches_respect_the_inner_detector():
    images = [draw((40, 30), [(RED, (1, 1, 9, 9))]), draw((50, 30), [(RED, (1, 1, 9, 9))])]
    inner = FakeColorDetector(max_batch=2)
    results = TtaDetector(inner, ("flip",)).predict(images)
    assert len(results) == 2 and all(len(r) == 1 for r in results)
    assert all(len(batch) <= 2 and len(set(batch)) == 1 for batch in inner.batches)


def test_unknown_view_is_refused():
    with pytest.raises(ValueError, match=r"unknown TTA view.*rotate"):
        TtaDetector(FakeColorDetector(), ("rotate",))


def test_a_large_box_no_tile_sees_whole_keeps_its_score():
    image = draw((150, 90), [(RED, (40, 20, 110, 70))])  # cut by every tile's inner edge
    [fused] = TtaDetector(FakeColorDetector(), ("flip", "tiles")).predict([image])
    assert [tuple(b) for b in fused.boxes.tolist()] == [(40, 20, 110, 70)]
    assert fused.scores.tolist() == pytest.approx([0.9])  # seen by both views that could
