"""The labelling pipeline on Apache Beam: the local run's steps as Beam transforms.

    list images ─► label files shared? ─┐
    manifest files ─► records per image ┴► CoGroupByKey ─► skip what is done ─► decode
      ─► RunInference(our detector) ─► threshold, write XML ─► manifest shards
    problems (failures, dropped boxes) ─► a report the driver reads back, then deletes

Every rule comes from the local run (auto_annotate/labelling.py, predict.predict_batch,
images.decode_image), so both write the same XML bytes and manifest records (``time``
aside). Counts are Beam metrics (namespace ``auto_annotate``). Unlike the local run, which
writes each image's record before its XML, the records are written as shards when the
pipeline finishes: a job that dies leaves labels without records, which a rerun keeps
(skipped as "existing"; with ``--overwrite``, as "not written by auto_annotate").
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace
from pathlib import Path

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.ml.inference.base import RunInference
from apache_beam.pvalue import TaggedOutput

from auto_annotate.annotate import Result, failed_result
from auto_annotate.beam import results
from auto_annotate.beam.files import (
    is_url,
    list_folder,
    read_image,
    read_label,
    relative,
    write_atomic,
    xml_path_of,
)
from auto_annotate.beam.handler import DetectorHandler
from auto_annotate.errors import AnnotateError, ImageError, VocError
from auto_annotate.images import decode_image, natural_key
from auto_annotate.label_map import LabelMap
from auto_annotate.labelling import (
    BROKEN_LINK,
    Options,
    decide,
    make_label,
    not_overwriting,
    shared_label,
    write_blocked,
    write_failure,
)
from auto_annotate.manifest import (
    ManifestRecord,
    Status,
    merge_latest,
    records_of_lines,
    shard_prefix,
)
from auto_annotate.predict import FailedImage, Prediction

__all__ = [
    "MANIFEST_FILES",
    "NAMESPACE",
    "BeamJob",
    "Finish",
    "ImageTask",
    "account",
    "build",
    "count",
    "decode",
    "list_images",
    "manifest_entries",
    "problem",
    "select",
    "unique_label_files",
]

NAMESPACE = "auto_annotate"
REPORT, FAILED = results.REPORT, "failed"
MANIFEST_FILES = "auto_annotate_manifest*.jsonl"  # the file and every run's shards


@dataclass(frozen=True)
class ImageTask:
    """One image: its path (local or URL), its path relative to the image folder, its
    label file, and the SHA-256 of the label file the run may replace."""

    image: str
    rel: str
    xml: str
    replaces: str | None = None


@dataclass(frozen=True)
class BeamJob:
    """What to label and how; ``run`` names this run's manifest shards."""

    imgs_root: str
    xml_root: str
    model_path: str
    label_map: LabelMap
    options: Options
    run: str
    batch_size: int = 1
    tta: tuple[str, ...] = ()

    def path(self, name: str) -> str:
        """A file in the XML folder."""
        return posixpath.join(self.xml_root, name) if is_url(self.xml_root) else \
            str(Path(self.xml_root) / name)


def count(name: str, value: int = 1) -> None:
    results.count(NAMESPACE, name, value)


def problem(path: str, reason: str, kind: str = "failed") -> TaggedOutput:
    """A line of the run's report: a failed image or a dropped box (``kind`` "box"), with
    the reason; counted as ``failed`` or ``box_errors``."""
    count("failed" if kind == "failed" else "box_errors")
    return results.report_line(kind, path, reason)


def list_images(_, job: BeamJob):
    """(label file, task) per image of the folder; links to nothing go to the report."""
    listing = list_folder(job.imgs_root, job.options.recursive)
    for suffix, number in listing.ignored.items():
        count(f"ignored{suffix}", number)
    for link in listing.broken_links:
        yield problem(link, BROKEN_LINK)
    for image in listing.images:
        count("found")
        rel = relative(image, job.imgs_root)
        xml = xml_path_of(job.xml_root, rel)
        yield xml, ImageTask(image, rel, xml)


def unique_label_files(item):
    """(rel, task) for an image with its own label file; images sharing one both fail."""
    xml, tasks = item
    tasks = sorted(tasks, key=lambda task: natural_key(Path(task.rel)))
    if len(tasks) == 1:
        yield tasks[0].rel, tasks[0]
        return
    names = ", ".join(task.rel for task in tasks)
    for task in tasks:
        yield problem(task.image, shared_label(posixpath.basename(xml), names))


def manifest_entries(readable):
    """(image, (file name, record)): the last record of each image in one manifest file."""
    path = readable.metadata.path
    text = readable.read().decode("utf-8", errors="replace")
    for image, record in records_of_lines(text.splitlines(), path).items():
        yield image, (posixpath.basename(path), record)


def select(item, options: Options):
    """The task, unless its image is done (see labelling.decide); skips are counted."""
    rel, joined = item
    tasks = list(joined["task"])
    if not tasks:
        return
    task = tasks[0]
    previous = merge_latest((name, {rel: record}) for name, record in joined["previous"])
    try:
        decision = decide(lambda: read_label(task.xml), task.xml, options, previous.get(rel))
    except (VocError, OSError) as error:
        yield problem(task.image, not_overwriting(error))
        return
    if decision.skip:
        count(f"skipped_{decision.skip}")
        return
    yield replace(task, replaces=decision.replaces)


def decode(task: ImageTask):
    """(task, DecodedImage), or a FailedImage naming why the image cannot be read."""
    try:
        yield task, decode_image(task.image, read_image(task.image))
    except ImageError as error:
        yield TaggedOutput(FAILED, FailedImage(task, error.problem))


class Finish(beam.DoFn):
    """Thresholds, writes each XML atomically, and emits the manifest records."""

    def __init__(self, label_map: LabelMap, options: Options) -> None:
        self.label_map, self.options = label_map, options

    def _label(self, prediction: Prediction) -> Result:
        task = prediction.task
        label = make_label(task.rel, task.image, posixpath.basename(task.xml),
                           prediction.image, prediction.detections, self.label_map,
                           self.options)
        if label.text is not None:
            blocked = write_blocked(lambda: read_label(task.xml), task.xml, self.options,
                                    task.replaces, label.text)
            if blocked:
                return Result(task, skipped=blocked)
            write_atomic(task.xml, label.text.encode("utf-8"))
        return Result(task, label.record)

    def process(self, outcome: Prediction | FailedImage):
        task = outcome.task
        if isinstance(outcome, FailedImage):
            result = failed_result(task, outcome.reason)
        else:
            try:
                result = self._label(outcome)
            except (OSError, AnnotateError) as error:
                result = failed_result(task, write_failure(task.xml, error))
        yield from account(result)


def account(result: Result):
    """Counts one result; yields its manifest record and report lines."""
    record: ManifestRecord | None = result.record
    if record is None:
        count(f"skipped_{result.skipped}")
        return
    if record.status is Status.FAILED:
        yield problem(result.task.image, record.error)
        yield record
        return
    for error in record.errors:
        yield problem(result.task.image, error, kind="box")
    count(record.status.value)
    count("boxes_written", len(record.boxes))
    count("empty_written", int(record.status is Status.EMPTY and record.xml is not None))
    yield record


def build(pipeline: beam.Pipeline, job: BeamJob, report_prefix: str) -> None:
    """Adds the labelling transforms to ``pipeline``."""
    listed = (pipeline | "Image folder" >> beam.Create([job.imgs_root])
              | "List images" >> beam.FlatMap(list_images, job).with_outputs(REPORT,
                                                                           main="tasks"))
    unique = (listed.tasks | "By label file" >> beam.GroupByKey()
              | "One image per label file" >> beam.FlatMap(unique_label_files)
              .with_outputs(REPORT, main="tasks"))
    previous = (pipeline | "Match manifests" >> fileio.MatchFiles(
        job.path(MANIFEST_FILES), fileio.EmptyMatchTreatment.ALLOW)
        | "Read manifests" >> fileio.ReadMatches()
        | "Records" >> beam.FlatMap(manifest_entries))
    todo = ({"task": unique.tasks, "previous": previous} | "Join" >> beam.CoGroupByKey()
            | "Skip what is done" >> beam.FlatMap(select, job.options)
            .with_outputs(REPORT, main="tasks"))
    # A fusion break: the decision is stored before any label is written, so a retried
    # bundle writes what was decided instead of deciding again on its own half-written output
    tasks = todo.tasks | "Keep the decision" >> beam.Reshuffle()
    decoded = tasks | "Decode" >> beam.FlatMap(decode).with_outputs(FAILED, main="images")
    predicted = (decoded.images
                 | "Detect" >> RunInference(DetectorHandler(job.model_path, job.batch_size,
                                                            job.tta))
                 | "Outcome" >> beam.Map(lambda result: result.inference))
    finished = ((predicted, decoded[FAILED]) | "Outcomes" >> beam.Flatten()
                | "Write labels" >> beam.ParDo(Finish(job.label_map, job.options))
                .with_outputs(REPORT, main="records"))
    _ = (finished.records | "As JSON" >> beam.Map(ManifestRecord.to_line)
         | "Manifest shards" >> beam.io.WriteToText(
             job.path(shard_prefix(job.run)), file_name_suffix=".jsonl", skip_if_empty=True))
    _ = ((listed[REPORT], unique[REPORT], todo[REPORT], finished[REPORT])
         | "Problems" >> beam.Flatten()
         | "Report" >> beam.io.WriteToText(report_prefix, skip_if_empty=True))
