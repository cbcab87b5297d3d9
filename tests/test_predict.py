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


@pytest.mark.parametrize("submitting", [False, True])
def test_an_image_of_a_rare_size_does_not_hold_back_the_whole_stream(tmp_path, submitting):
    """Memory stays bounded too, also with batches running in the detector's threads."""
    items = _images(tmp_path, [(30, 20)] + [(40, 30)] * 40)
    pulled = []

    def tasks():
        for item in items:
            pulled.append(item)
            yield item

    detector = Submitting(max_batch=4) if submitting else FakeColorDetector(max_batch=4)
    stream = predict_stream(tasks(), detector)
    first = next(stream)
    assert first.task == items[0] and isinstance(first, Prediction)
    assert len(pulled) < len(items)  # at most max_pending waiting, plus the decode lookahead
    assert [o.task for o in stream] == items[1:]


@pytest.mark.parametrize("workers", [1, 3])
def test_no_task_gives_no_outcome_and_no_model_call(workers):
    detector = FakeColorDetector()
    assert list(predict_stream([], detector, workers)) == [] and detector.batches == []


class _Handle:
    def __init__(self, future, owner):
        self.future, self.owner = future, owner

    def done(self):
        return self.future.done()

    def result(self):
        self.owner.in_flight -= 1
        return self.future.result()


class Submitting(FakeColorDetector):
    """A detector that runs batches in its own thread (``submit``); the first batch waits
    until a second one was submitted, which only a stream that keeps going can do."""

    def __init__(self, max_batch, fail_submit_on=None, **kwargs):
        from concurrent.futures import ThreadPoolExecutor
        from threading import Event

        super().__init__(max_batch, **kwargs)
        self.pool, self.second = ThreadPoolExecutor(1), Event()
        self.fail_submit_on, self.submitted, self.in_flight, self.most = fail_submit_on, 0, 0, 0
        self.overlapped = None

    def submit(self, images):
        self.submitted += 1
        if self.submitted == 2:
            self.second.set()
        if self.submitted == self.fail_submit_on:
            raise ValueError("cannot start this batch")
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        return _Handle(self.pool.submit(self._first_waits, images), self)

    def _first_waits(self, images):
        if self.overlapped is None:
            self.overlapped = self.second.wait(timeout=10)
        return self.predict(images)


def test_a_submitting_detector_gets_the_next_batch_while_one_runs(tmp_path):
    sizes = [(40, 30), (50, 30)] * 6 + [(60, 20)]
    items = _images(tmp_path, sizes)
    detector = Submitting(max_batch=2)
    outcomes = list(predict_stream(items, detector))
    assert detector.overlapped is True  # batch 2 was submitted before batch 1 finished
    assert [o.task for o in outcomes] == items
    assert all(isinstance(o, Prediction) for o in outcomes)
    assert [o.image.hw for o in outcomes] == [(h, w) for w, h in sizes]
    synchronous = list(predict_stream(items, FakeColorDetector(max_batch=2)))
    for got, expected in zip(outcomes, synchronous, strict=True):
        np.testing.assert_array_equal(got.detections.boxes, expected.detections.boxes)
    assert detector.most == 2 and detector.in_flight == 0  # two at once at most; all taken


@pytest.mark.parametrize("failure", ["submit", "result"])
def test_a_batch_that_fails_to_start_or_to_finish_fails_alone(tmp_path, failure):
    items = _images(tmp_path, [(40, 30)] * 6)
    detector = Submitting(max_batch=2, **({"fail_submit_on": 2} if failure == "submit"
                                          else {"fail_on": 2}))
    outcomes = list(predict_stream(items, detector))
    assert [o.task for o in outcomes] == items
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["Prediction"] * 2 + ["FailedImage"] * 2 + ["Prediction"] * 2
    reason = outcomes[2].reason
    assert reason == ("model failed: ValueError: cannot start this batch" if failure == "submit"
                      else "model failed: RuntimeError: fake model failure")


class _Preparing(FakeColorDetector):
    """A detector with ``prepare``: the stream runs it in the decoding threads."""

    def __init__(self, refuse_width: int) -> None:
        super().__init__()
        self.refuse_width, self.threads = refuse_width, set()

    def prepare(self, image):
        import threading

        self.threads.add(threading.current_thread().name)
        if image.shape[1] == self.refuse_width:
            raise ValueError("this width is not for me")
        return image


def test_prepare_runs_in_the_decoding_threads_and_an_image_it_refuses_fails_alone(tmp_path):
    import threading

    items = _images(tmp_path, [(40, 30), (50, 30), (40, 30)])
    detector = _Preparing(refuse_width=50)
    first, refused, third = predict_stream(items, detector, workers=2)
    assert isinstance(first, Prediction) and isinstance(third, Prediction)
    assert isinstance(refused, FailedImage) and not refused.by_model
    assert refused.reason == ("cannot prepare it for the model "
                              "(ValueError: this width is not for me)")
    assert detector.threads and threading.current_thread().name not in detector.threads
