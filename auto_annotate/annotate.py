"""The annotation run: list images, skip what is labelled, decode ahead, detect, write.

Decoding runs in worker threads ahead of the model (PIL releases the GIL while it decodes),
so decoding overlaps inference; images are grouped into batches the model can take.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from auto_annotate import boxes as box_ops
from auto_annotate.detections import Detections, non_finite_problem
from auto_annotate.errors import AnnotateError, ImageError, VocError, error_line
from auto_annotate.fileio import atomic_write_text
from auto_annotate.images import DecodedImage, decode_image, scan_images
from auto_annotate.label_map import LabelMap
from auto_annotate.labelling import (
    BROKEN_LINK,
    Options,
    decide,
    failed_record,
    make_label,
    not_overwriting,
    predefined_classes_text,
    read_label_file,
    shared_label,
    write_blocked,
    write_failure,
)
from auto_annotate.manifest import MANIFEST_NAME, ManifestWriter, read_manifest
from auto_annotate.model import Detector
from auto_annotate.summary import Summary

LOG = logging.getLogger(__name__)
PREDEFINED_CLASSES = "predefined_classes.txt"


@dataclass(frozen=True)
class Task:
    """One image to annotate: the file, its path relative to the image folder, its XML,
    and ``replaces``: the SHA-256 of the existing XML this run may replace (one it wrote
    itself and nobody changed since), None when there was no XML."""

    image: Path
    rel: str
    xml: Path
    replaces: str | None = None


@dataclass
class Result:
    """What became of one image: ``status`` "annotated", "empty", "skipped" or "failed",
    and its manifest record (for "skipped", ``{"reason": ...}``)."""

    task: Task
    status: str
    record: dict = field(default_factory=dict)


def plan_tasks(imgs_root: Path, xml_root: Path, recursive: bool,
               summary: Summary) -> list[Task]:
    """One task per image; the XML mirrors the image's sub-folder under ``xml_root``.

    Images whose XML paths collide (a.jpg and a.png) and image links whose target is
    missing are reported as failed; unsupported image formats are counted in the summary.
    """
    by_xml: dict[Path, list[Task]] = {}
    scan = scan_images(imgs_root, recursive)
    summary.ignored = scan.ignored
    for link in scan.broken_links:
        summary.fail(link, BROKEN_LINK)
    for image in scan.images:
        rel = image.relative_to(imgs_root)
        task = Task(image, rel.as_posix(), xml_root / rel.parent / (image.stem + ".xml"))
        by_xml.setdefault(task.xml, []).append(task)
    summary.found = sum(len(group) for group in by_xml.values())
    tasks = []
    for xml_path, group in by_xml.items():
        if len(group) == 1:
            tasks.append(group[0])
            continue
        names = ", ".join(task.rel for task in group)
        for task in group:
            summary.fail(task.image, shared_label(xml_path.name, names))
    return tasks


def _already_done(task: Task, options: Options, previous: dict | None) -> Task | str:
    """The task to process (with the hash of the XML it may replace), or the skip reason
    for an image already handled; see :func:`auto_annotate.labelling.decide`."""
    decision = decide(lambda: read_label_file(task.xml), task.xml, options, previous)
    return decision.skip or replace(task, replaces=decision.replaces)


def select_tasks(tasks: list[Task], options: Options, manifest: dict[str, dict],
                 summary: Summary) -> list[Task]:
    """Drops images that are labelled already (verified files always; others unless
    ``overwrite``, and then files a person edited) and images a previous identical run
    found empty."""
    todo = []
    for task in tasks:
        try:
            outcome = _already_done(task, options, manifest.get(task.rel))
        except (VocError, OSError) as error:
            summary.fail(task.image, not_overwriting(error))
            continue
        if isinstance(outcome, Task):
            todo.append(outcome)
        else:
            summary.skip(outcome)
    return todo


def _decode(task: Task) -> tuple[Task, DecodedImage | ImageError]:
    try:
        return task, decode_image(task.image)
    except ImageError as error:
        return task, error


def decoded_stream(tasks: Iterable[Task], workers: int,
                   lookahead: int) -> Iterator[tuple[Task, DecodedImage | ImageError]]:
    """Decodes images in ``workers`` threads, at most ``lookahead`` ahead, in order."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = []
        for task in tasks:
            pending.append(pool.submit(_decode, task))
            if len(pending) >= lookahead:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def group_batches(stream, detector: Detector, max_pending: int):
    """Groups decoded images into batches with one batch key; failures pass alone."""
    buckets: OrderedDict = OrderedDict()
    for task, item in stream:
        if isinstance(item, ImageError):
            yield [(task, item)]
            continue
        key = detector.batch_key(item.upright.shape[:2])
        bucket = buckets.setdefault(key, [])
        bucket.append((task, item))
        if len(bucket) >= detector.max_batch:
            yield buckets.pop(key)
        elif sum(len(b) for b in buckets.values()) > max_pending:
            yield buckets.pop(next(iter(buckets)))
    yield from buckets.values()


def to_label_frame(detections: Detections, image: DecodedImage) -> Detections:
    """Boxes in the frame LabelImg shows (the upright image), clipped to it.

    The detector already ran on the upright image, so only clipping is left to do.
    """
    return Detections(box_ops.clip_xyxy(detections.boxes, image.hw), detections.scores,
                      detections.class_ids)


def finish_image(task: Task, image: DecodedImage, detections: Detections,
                 label_map: LabelMap, options: Options, manifest: ManifestWriter) -> Result:
    """Thresholds label-frame detections, builds the record, appends it to the manifest,
    then writes the XML if due: a run killed at any point leaves no XML without its record
    (a record whose XML is missing is simply done again)."""
    label = make_label(task.rel, task.image, task.xml.name, image, detections, label_map,
                       options)
    if label.text is not None:
        blocked = write_blocked(lambda: read_label_file(task.xml), task.xml, options,
                                task.replaces, label.text)
        if blocked:
            return Result(task, "skipped", {"reason": blocked})
    if not manifest.append(label.record):
        return failed_result(task, f"not labelled: {manifest.error.problem}")
    if label.text is not None:
        atomic_write_text(task.xml, label.text)
    return Result(task, label.status, label.record)


def failed_result(task: Task, reason: str) -> Result:
    """A failed image's result, with its manifest record."""
    return Result(task, "failed", failed_record(task.rel, reason))


def predict_group(group, detector: Detector) -> Iterator[Result | tuple]:
    """Runs the detector on one batch: a failed ``Result`` per image that could not be
    decoded or run, else ``(task, image, detections in the label frame)``."""
    images = [(task, item) for task, item in group if isinstance(item, DecodedImage)]
    for task, item in group:
        if isinstance(item, ImageError):
            yield failed_result(task, item.problem)
    if not images:
        return
    try:
        predictions = detector.predict([image.upright for _, image in images])
    except Exception as error:  # one failing batch must not end the run
        reason = f"model failed: {error_line(error)}"
        for task, _ in images:
            yield failed_result(task, reason)
        return
    for (task, image), detections in zip(images, predictions, strict=True):
        problem = non_finite_problem(detections)
        if problem:
            yield failed_result(task, problem)
        else:
            yield task, image, to_label_frame(detections, image)


def finish_safely(task: Task, image: DecodedImage, detections: Detections,
                  label_map: LabelMap, options: Options, manifest: ManifestWriter) -> Result:
    """:func:`finish_image`, with a write failure as this image's failure."""
    try:
        return finish_image(task, image, detections, label_map, options, manifest)
    except (OSError, AnnotateError) as error:
        return failed_result(task, write_failure(task.xml, error))


def _done(result: Result) -> Future:
    future: Future = Future()
    future.set_result(result)
    return future


def _account(result: Result, summary: Summary, manifest: ManifestWriter) -> None:
    """Counts a result; records of labelled images are in the manifest already."""
    if result.status == "skipped":
        summary.skip(result.record["reason"])
        return
    if result.status == "failed":
        manifest.append(result.record)
        summary.fail(result.task.image, result.record["error"])
        return
    for error in result.record["errors"]:
        summary.box_error(result.task.image, error)
    summary.count(result.status, len(result.record["boxes"]), result.record["xml"] is not None)


def write_predefined_classes(xml_root: Path, label_map: LabelMap) -> Path:
    """Writes LabelImg's class list; an existing list keeps its lines, missing names are added."""
    path = xml_root / PREDEFINED_CLASSES
    existing = path.read_text(encoding="utf-8") if path.is_file() else None
    text = predefined_classes_text(existing, label_map)
    if text is not None:
        atomic_write_text(path, text)
    return path


def annotate_folder(detector: Detector, label_map: LabelMap, imgs_path: str | Path,
                    xml_path: str | Path | None = None, options: Options = Options()) -> Summary:
    """Annotates every image of a folder; see the package documentation.

    Returns:
        The run's Summary (its ``exit_code`` is 0 when every image was handled).
    """
    imgs_root = Path(imgs_path)
    xml_root = Path(xml_path) if xml_path is not None else imgs_root
    if not imgs_root.is_dir():
        raise AnnotateError(imgs_root, "image folder does not exist")
    summary = Summary()
    tasks = plan_tasks(imgs_root, xml_root, options.recursive, summary)
    return annotate_tasks(detector, label_map, tasks, xml_root, options, summary)


def annotate_tasks(detector: Detector, label_map: LabelMap, tasks: list[Task],
                   xml_root: str | Path, options: Options = Options(),
                   summary: Summary | None = None) -> Summary:
    """Annotates the given images; the class list and the manifest go into ``xml_root``."""
    start, summary, xml_root = time.perf_counter(), summary or Summary(found=len(tasks)), \
        Path(xml_root)
    try:
        xml_root.mkdir(parents=True, exist_ok=True)
        write_predefined_classes(xml_root, label_map)
    except OSError as error:
        raise AnnotateError(xml_root, f"cannot write to the XML folder ({error})") from None
    summary.manifest = xml_root / MANIFEST_NAME
    todo = select_tasks(tasks, options, read_manifest(summary.manifest), summary)
    lookahead = max(8, 2 * detector.max_batch)
    # Decoding runs ahead in worker threads, the model in this one, and finishing (threshold,
    # XML write with fsync) in one writer thread, so writes overlap the next model call.
    # Results are accounted in input order.
    with ManifestWriter(summary.manifest) as manifest, \
            tqdm(total=len(todo), unit="img", desc="annotating",
                 disable=not options.progress) as bar, \
            ThreadPoolExecutor(max_workers=1) as writer:
        pending: deque = deque()

        def account(limit: int) -> None:
            while pending and (len(pending) > limit or pending[0].done()):
                _account(pending.popleft().result(), summary, manifest)
                bar.update(1)

        stream = decoded_stream(todo, options.workers, lookahead)
        try:
            for group in group_batches(stream, detector, max(16, 4 * detector.max_batch)):
                for item in predict_group(group, detector):
                    pending.append(_done(item) if isinstance(item, Result) else writer.submit(
                        finish_safely, *item, label_map, options, manifest))
                account(lookahead)
                if manifest.error is not None:  # stop cleanly; labels written are kept
                    break
        finally:
            account(0)
    summary.error = None if manifest.error is None else str(manifest.error)
    summary.seconds = time.perf_counter() - start
    return summary
