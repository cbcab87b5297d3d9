"""Images to detections, image by image: decode ahead, batch, run the model.

Decoding runs in worker threads ahead of the model (libjpeg-turbo and PIL release the GIL
while they decode), so decoding overlaps inference; a detector that can run batches in its
own threads (``submit``) gets the next batch while the stream finishes the last. Images are
grouped into batches the model can take (equal batch keys), and each image's outcome comes
back in input order: its detections in the label frame, or a one-line reason it has none
(an image that cannot be decoded, a model call that fails, non-finite model output). One
image's failure never ends the stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from auto_annotate import boxes as box_ops
from auto_annotate.detections import Detections, non_finite_problem
from auto_annotate.errors import ImageError, error_line
from auto_annotate.images import DecodedImage, decode_image
from auto_annotate.model import Detector

__all__ = ["FailedImage", "HasImage", "Prediction", "decoded_stream", "predict_batch",
           "predict_stream", "to_label_frame"]


class HasImage(Protocol):
    """A task of the stream: anything with the path of its ``image`` file."""

    @property
    def image(self) -> Path | str: ...


@dataclass(frozen=True)
class FailedImage:
    """An image that got no detections: its task, the one-line reason, and whether the
    model failed (its call raised, or its output was not finite) rather than the image."""

    task: Any
    reason: str
    by_model: bool = False


@dataclass(frozen=True)
class Prediction:
    """An image's detections: its task, the decoded image, and the detections in the label
    frame (pixel xyxy in the upright image, clipped to it)."""

    task: Any
    image: DecodedImage
    detections: Detections


Outcome = FailedImage | Prediction


def to_label_frame(detections: Detections, image: DecodedImage) -> Detections:
    """Boxes in the frame LabelImg shows (the upright image), clipped to it.

    The detector already ran on the upright image, so only clipping is left to do.
    """
    return Detections(box_ops.clip_xyxy(detections.boxes, image.hw), detections.scores,
                      detections.class_ids)


def _decode(task: HasImage, prepare: Callable[[np.ndarray], Any] | None = None
            ) -> tuple[HasImage, DecodedImage | ImageError]:
    try:
        image = decode_image(task.image)
    except ImageError as error:
        return task, error
    if prepare is None:
        return task, image
    try:
        return task, replace(image, prepared=prepare(image.upright))
    except Exception as error:  # one image the detector cannot take must not end the run
        return task, ImageError(task.image, f"cannot prepare it for the model "
                                            f"({error_line(error)})")


def decoded_stream(tasks: Iterable[HasImage], workers: int, lookahead: int,
                   prepare: Callable[[np.ndarray], Any] | None = None
                   ) -> Iterator[tuple[HasImage, DecodedImage | ImageError]]:
    """Decodes images in ``workers`` threads, at most ``lookahead`` ahead, in order;
    ``prepare`` (a detector's, see :class:`auto_annotate.model.Detector`) runs there too."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = []
        for task in tasks:
            pending.append(pool.submit(_decode, task, prepare))
            if len(pending) >= lookahead:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def _inputs(batch: Sequence[tuple[Any, DecodedImage]]) -> list:
    """What the detector takes for each image: its ``prepare`` result, else the pixels."""
    return [image.upright if image.prepared is None else image.prepared for _, image in batch]


def _outcomes(batch: Sequence[tuple[Any, DecodedImage]],
              result: Callable[[], list[Detections]]) -> list[Outcome]:
    """One outcome per image of a batch, from ``result()`` (the model's detections): a
    model call that raises fails every image of the batch."""
    try:
        predictions = result()
    except Exception as error:  # one failing batch must not end the run
        reason = f"model failed: {error_line(error)}"
        return [FailedImage(task, reason, by_model=True) for task, _ in batch]
    outcomes: list[Outcome] = []
    for (task, image), detections in zip(batch, predictions, strict=True):
        problem = non_finite_problem(detections)
        outcomes.append(FailedImage(task, problem, by_model=True) if problem else
                        Prediction(task, image, to_label_frame(detections, image)))
    return outcomes


def predict_batch(batch: Sequence[tuple[Any, DecodedImage]],
                  detector: Detector) -> list[Outcome]:
    """Runs the detector on one batch of decoded images (one model call); one outcome per
    image, in order. A model call that raises fails every image of the batch."""
    if not batch:
        return []
    return _outcomes(batch, lambda: detector.predict(_inputs(batch)))


def _start(detector: Detector, inputs: list) -> Any:
    """A detector's ``submit(inputs)`` (the model starts and this returns at once), with an
    error raised by the call itself kept for ``result()``."""
    try:
        return detector.submit(inputs)
    except Exception as error:  # the batch fails when its result is asked for
        failed: Future = Future()
        failed.set_exception(error)
        return failed


@dataclass
class _InOrder:
    """Batches decoded images by batch key and hands their outcomes back in input order.

    Images wait in a bucket per batch key until it holds a full batch. When more than
    ``max_pending`` images wait (in buckets, running, or done but behind an earlier one),
    the earliest running batch is waited for, else the bucket holding the earliest waiting
    image runs, so memory stays bounded. A detector with ``submit`` runs up to
    ``max_running`` batches at once while this thread goes on decoding and batching;
    any other detector runs each batch in this thread.
    """

    detector: Detector
    max_pending: int
    max_running: int = 2
    buckets: dict[Hashable, list[tuple[int, Any, DecodedImage]]] = field(default_factory=dict)
    running: deque = field(default_factory=deque)  # (batch, handle) in submission order
    done: dict[int, Outcome] = field(default_factory=dict)
    emitted: int = 0  # the index of the next outcome to hand back

    def add(self, index: int, task, item: DecodedImage | ImageError) -> None:
        """Takes the ``index``-th decoded image (or why it could not be decoded)."""
        if isinstance(item, ImageError):
            self.done[index] = FailedImage(task, item.problem)
            return
        key = self.detector.batch_key(item.upright.shape[:2])
        bucket = self.buckets.setdefault(key, [])
        bucket.append((index, task, item))
        if len(bucket) >= self.detector.max_batch:
            self._run(key)

    def _run(self, key: Hashable) -> None:
        batch = [(index, (task, image)) for index, task, image in self.buckets.pop(key)]
        pairs = [pair for _, pair in batch]
        if not hasattr(self.detector, "submit"):
            self._store(batch, predict_batch(pairs, self.detector))
            return
        while len(self.running) >= self.max_running:
            self._collect()
        self.running.append((batch, _start(self.detector, _inputs(pairs))))

    def _store(self, batch: list, outcomes: list[Outcome]) -> None:
        self.done.update(zip((index for index, _ in batch), outcomes, strict=True))

    def _collect(self) -> None:
        """Waits for the earliest running batch and stores its outcomes."""
        batch, handle = self.running.popleft()
        self._store(batch, _outcomes([pair for _, pair in batch], handle.result))

    def _waiting(self) -> int:
        return (len(self.done) + sum(map(len, self.buckets.values()))
                + sum(len(batch) for batch, _ in self.running))

    def _earliest(self) -> Hashable:
        return min(self.buckets, key=lambda key: self.buckets[key][0][0])

    def _emit(self) -> Iterator[Outcome]:
        while self.running and self.running[0][1].done():
            self._collect()
        while self.emitted in self.done:
            yield self.done.pop(self.emitted)
            self.emitted += 1

    def ready(self) -> Iterator[Outcome]:
        """The outcomes whose turn has come, in input order; waits for the earliest running
        batch, or runs the earliest bucket before its batch is full, when too many images
        wait."""
        yield from self._emit()
        while (self.buckets or self.running) and self._waiting() > self.max_pending:
            self._relieve()
            yield from self._emit()

    def _relieve(self) -> None:
        """Moves the earliest waiting image on: runs its bucket, or waits for its batch."""
        key = self._earliest() if self.buckets else None
        if key is not None and (not self.running
                                or self.buckets[key][0][0] < self.running[0][0][0][0]):
            self._run(key)
        else:
            self._collect()

    def finish(self) -> Iterator[Outcome]:
        """Runs what still waits; every remaining outcome, in input order."""
        yield from self._emit()
        while self.buckets or self.running:
            if self.buckets:
                self._run(self._earliest())
            else:
                self._collect()
            yield from self._emit()


def predict_stream(tasks: Iterable[HasImage], detector: Detector,
                   workers: int = 2) -> Iterator[Outcome]:
    """Decodes, batches and runs the detector over images; one outcome per image, in input
    order, each either a :class:`Prediction` (detections in the label frame) or a
    :class:`FailedImage` (the task and why: undecodable image, failing model batch,
    non-finite output).

    Args:
        tasks: anything with an ``image`` path (a local file), returned in the outcome.
        detector: the model (see :class:`auto_annotate.model.Detector`); it runs in the
            calling thread, or, if it has ``submit``, in its own threads with up to two
            batches at once, while this thread goes on batching.
        workers: decoding threads.
    """
    lookahead = max(8, 2 * detector.max_batch)
    order = _InOrder(detector, max(16, 4 * detector.max_batch))
    prepare = getattr(detector, "prepare", None)
    for index, (task, item) in enumerate(decoded_stream(tasks, workers, lookahead, prepare)):
        order.add(index, task, item)
        yield from order.ready()
    yield from order.finish()
