"""The annotation run: list images, skip what is labelled, predict, write.

Images are decoded ahead, batched and run through the model by
:func:`auto_annotate.predict.predict_stream`; each image's label and manifest record are
finished in a writer thread, so writes overlap the next model call.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from auto_annotate.detections import Detections
from auto_annotate.errors import AnnotateError, VocError
from auto_annotate.fileio import atomic_write_text
from auto_annotate.images import DecodedImage, scan_images
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
from auto_annotate.manifest import (
    MANIFEST_NAME,
    ManifestRecord,
    ManifestWriter,
    Status,
    read_manifest,
)
from auto_annotate.model import Detector
from auto_annotate.predict import FailedImage, Prediction, predict_stream
from auto_annotate.summary import Summary
from auto_annotate.voc import label_path

__all__ = ["PREDEFINED_CLASSES", "Options", "Result", "Task", "annotate_folder",
           "annotate_tasks", "failed_result", "finish_image", "plan_tasks", "select_tasks",
           "write_predefined_classes"]

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


@dataclass(frozen=True)
class Result:
    """What became of one image: its manifest ``record`` (annotated, empty or failed), or,
    for an image left alone, no record and ``skipped``: why (e.g. "verified")."""

    task: Task
    record: ManifestRecord | None = None
    skipped: str | None = None


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
        task = Task(image, rel.as_posix(), label_path(rel, xml_root))
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


def _already_done(task: Task, options: Options,
                  previous: ManifestRecord | None) -> Task | str:
    """The task to process (with the hash of the XML it may replace), or the skip reason
    for an image already handled; see :func:`auto_annotate.labelling.decide`."""
    decision = decide(lambda: read_label_file(task.xml), task.xml, options, previous)
    return decision.skip or replace(task, replaces=decision.replaces)


def select_tasks(tasks: list[Task], options: Options, manifest: dict[str, ManifestRecord],
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
            return Result(task, skipped=blocked)
    if not manifest.append(label.record):
        return failed_result(task, f"not labelled: {manifest.error.problem}")
    if label.text is not None:
        atomic_write_text(task.xml, label.text)
    return Result(task, label.record)


def failed_result(task: Task, reason: str) -> Result:
    """A failed image's result, with its manifest record."""
    return Result(task, failed_record(task.rel, reason))


def finish_safely(prediction: Prediction, label_map: LabelMap, options: Options,
                  manifest: ManifestWriter) -> Result:
    """:func:`finish_image`, with a write failure as this image's failure."""
    task = prediction.task
    try:
        return finish_image(task, prediction.image, prediction.detections, label_map, options,
                            manifest)
    except (OSError, AnnotateError) as error:
        return failed_result(task, write_failure(task.xml, error))


def _done(result: Result) -> Future:
    future: Future = Future()
    future.set_result(result)
    return future


def _account(result: Result, summary: Summary, manifest: ManifestWriter) -> None:
    """Counts a result; records of labelled images are in the manifest already."""
    record = result.record
    if record is None:
        summary.skip(result.skipped)
        return
    if record.status is Status.FAILED:
        manifest.append(record)
        summary.fail(result.task.image, record.error)
        return
    for error in record.errors:
        summary.box_error(result.task.image, error)
    summary.count(record.status, len(record.boxes), record.xml is not None)


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


def _xml_folder(xml_root: Path, label_map: LabelMap) -> Path:
    """Creates the XML folder with LabelImg's class list in it."""
    try:
        xml_root.mkdir(parents=True, exist_ok=True)
        write_predefined_classes(xml_root, label_map)
    except OSError as error:
        raise AnnotateError(xml_root, f"cannot write to the XML folder ({error})") from None
    return xml_root


def annotate_tasks(detector: Detector, label_map: LabelMap, tasks: list[Task],
                   xml_root: str | Path, options: Options = Options(),
                   summary: Summary | None = None) -> Summary:
    """Annotates the given images; the class list and the manifest go into ``xml_root``."""
    start, summary = time.perf_counter(), summary or Summary(found=len(tasks))
    summary.manifest = _xml_folder(Path(xml_root), label_map) / MANIFEST_NAME
    todo = select_tasks(tasks, options, read_manifest(summary.manifest), summary)
    lookahead = max(8, 2 * detector.max_batch)
    # The model runs in this thread, and finishing (threshold, XML write with fsync) in one
    # writer thread, so writes overlap the next model call. Results are accounted in order.
    with ManifestWriter(summary.manifest) as manifest, \
            tqdm(total=len(todo), unit="img", desc="annotating",
                 disable=not options.progress) as bar, \
            ThreadPoolExecutor(max_workers=1) as writer:
        pending: deque = deque()

        def account(limit: int) -> None:
            while pending and (len(pending) > limit or pending[0].done()):
                _account(pending.popleft().result(), summary, manifest)
                bar.update(1)

        try:
            for outcome in predict_stream(todo, detector, options.workers):
                pending.append(
                    _done(failed_result(outcome.task, outcome.reason))
                    if isinstance(outcome, FailedImage) else
                    writer.submit(finish_safely, outcome, label_map, options, manifest))
                account(lookahead)
                if manifest.error is not None:  # stop cleanly; labels written are kept
                    break
        finally:
            account(0)
    summary.error = None if manifest.error is None else str(manifest.error)
    summary.seconds = time.perf_counter() - start
    return summary
