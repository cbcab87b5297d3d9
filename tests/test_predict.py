"""predict_stream: decode ahead, batch by batch key, one outcome per image in input order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from auto_annotate import FailedImage, Prediction, predict_stream
from auto_annotate.detections import Detections
from tests.helpers import RED, FakeColorDetector, draw, save


@dataclass(frozen=True)
class Item:
    image: Path


def _images(folder, sizes, rect=(2, 2, 12, 8)):
    return [Item(save(folder / f"i{index:02d}.png", draw(size, [(RED, rect)])))
            for index, size in enumerate(sizes)]


def test_outcomes_come_in_input_order_while_batches_group_equal_sizes(tmp_path):
    sizes = [(40, 30), (50, 30), (40, 30), (50, 30), (50, 30), (40, 30), (60, 20)]
    items = _images(tmp_path, sizes)
    detector = FakeColorDetector(max_batch=2)
    outcomes = list(predict_stream(items, detector))
    assert [o.task for o in outcomes] == items
    assert all(isinstance(o, Prediction) for o in outcomes)
    assert [o.image.hw for o in outcomes] == [(h, w) for w, h in sizes]
    assert all(len(set(batch)) == 1 and len(batch) <= 2 for batch in detector.batches)
    assert sorted(len(batch) for batch in detector.batches) == [1, 1, 1, 2, 2]


def test_each_failure_is_the_images_own_with_a_one_line_reason(tmp_path):
    class NanOnWide(FakeColorDetector):
        def predict(self, images):
            found = super().predict(images)
            return [Detections(np.full((1, 4), np.nan), [0.5], [1]) if i.shape[1] == 50
                    else d for i, d in zip(images, found, strict=True)]

    items = _images(tmp_path, [(40, 30)] * 3 + [(50, 30)])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    items.insert(1, Item(tmp_path / "bad.png"))
    outcomes = list(predict_stream(items, NanOnWide(fail_on=2)))  # 2nd call: i01
    assert [o.task for o in outcomes] == items
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["Prediction", "FailedImage", "FailedImage", "Prediction", "FailedImage"]
    reasons = [o.reason for o in outcomes if isinstance(o, FailedImage)]
    assert "not a readable image" in reasons[0]
    assert reasons[1] == "model failed: RuntimeError: fake model failure"
    assert "non-finite" in reasons[2] and "\n" not in "".join(reasons)


def test_detections_are_clipped_to_the_label_frame_of_a_non_square_image(tmp_path):
    class Outside(FakeColorDetector):
        def predict(self, images):
            return [Detections(np.array([[-5.0, 3.0, 80.0, 99.0]]), [0.9], [1])
                    for _ in images]

    (outcome,) = predict_stream(_images(tmp_path, [(60, 40)]), Outside())
    assert outcome.detections.boxes.tolist() == [[0.0, 3.0, 60.0, 40.0]]


def test_an_image_of_a_rare_size_does_not_hold_back_the_whole_stream(tmp_path):
    items = _images(tmp_path, [(30, 20)] + [(40, 30)] * 40)
    pulled = []

    def tasks():
        for item in items:
            pulled.append(item)
            yield item

    stream = predict_stream(tasks(), FakeColorDetector(max_batch=4))
    first = next(stream)
    assert first.task == items[0] and isinstance(first, Prediction)
    assert len(pulled) < len(items)  # at most max_pending waiting, plus the decode lookahead
    assert [o.task for o in stream] == items[1:]


@pytest.mark.parametrize("workers", [1, 3])
def test_no_task_gives_no_outcome_and_no_model_call(workers):
    detector = FakeColorDetector()
    assert list(predict_stream([], detector, workers)) == [] and detector.batches == []
