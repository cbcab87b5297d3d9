"""VOC XML + images -> sharded TFRecords as an Apache Beam pipeline (the ``beam`` extra):
the examples :func:`tsoda.data.tfrecords.write_tfrecords` writes, converted in parallel.

The driver lists both folders (names only) and writes the work list (``index<TAB>xml
name``, in the local writer's order) and the image folder's file names into a work folder
beside the output; workers read them, convert each file with the local writer's
functions (tsoda/data/examples.py), and number the usable examples as the local writer does
(``image/source_id`` is the example's rank among the usable files, in name order). Shards
are named as the local writer names them; which example lands in which shard differs.
Folders and output may be local paths or URLs Beam's file systems reach.
"""

from __future__ import annotations

import bisect
import json
import posixpath
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from auto_annotate.beam import results
from auto_annotate.beam.files import is_url, read_bytes, remove_folder, write_atomic
from auto_annotate.beam.run import new_run
from auto_annotate.errors import AnnotateError, ImageError, VocError
from auto_annotate.label_map import LabelMap
from auto_annotate.voc import parse_voc
from tsoda.data.examples import example_from_files
from tsoda.data.tfrecords import (
    TfRecordError,
    TfRecordReport,
    image_index,
    image_name_for,
    problem_of,
)

NAMESPACE = "tsoda_tfrecords"
COUNTS = ("examples", "negatives", "boxes")


@dataclass(frozen=True)
class RecordsJob:
    """One conversion: folders, label map, output, shards, and the work folder."""

    xml_dir: str
    image_dir: str
    label_map: LabelMap
    output_path: str
    num_shards: int
    work: str


def join(folder: str, name: str) -> str:
    return posixpath.join(folder, name) if is_url(folder) else str(Path(folder) / name)


def file_names(folder: str) -> list[str]:
    """Names of the files directly in a folder (local or URL), sorted."""
    if not is_url(folder):
        return sorted(p.name for p in Path(folder).iterdir() if p.is_file())
    found = FileSystems.match([folder.rstrip("/") + "/*"])[0].metadata_list
    return sorted(posixpath.basename(m.path) for m in found)


class Convert(beam.DoFn):
    """``index<TAB>xml name`` -> (index, serialized example); problems to the report."""

    def __init__(self, job: RecordsJob) -> None:
        self.job = job

    def setup(self) -> None:
        names = json.loads(read_bytes(join(self.job.work, "images.json")))
        self.names, self.index = frozenset(names), image_index(names)

    def _example(self, xml_name: str):
        xml_path = join(self.job.xml_dir, xml_name)
        try:
            annotation = parse_voc(read_bytes(xml_path), xml_path)
        except OSError as error:
            raise VocError(xml_path, f"cannot read ({error})") from None
        image = join(self.job.image_dir, image_name_for(
            xml_name, annotation, self.names.__contains__, self.index, self.job.image_dir))
        try:
            data = read_bytes(image)
        except OSError as error:
            raise ImageError(image, f"cannot read ({error})") from None
        return example_from_files(annotation, image, data, self.job.label_map, 0)

    def process(self, line: str):
        number, xml_name = line.split("\t", 1)
        try:
            example, objects, problems = self._example(xml_name)
        except AnnotateError as error:
            yield results.report_line("skipped", xml_name, problem_of(error, xml_name))
            return
        for problem in problems:
            yield results.report_line("dropped", xml_name, problem)
        for name, value in (("examples", 1), ("negatives", int(not objects.class_ids)),
                            ("boxes", len(objects.class_ids))):
            results.count(NAMESPACE, name, value)
        for text in objects.class_texts:
            results.count(NAMESPACE, f"class/{text}")
        yield int(number), example.SerializeToString()


def with_source_id(item: tuple[int, bytes], usable: list[int]) -> bytes:
    """The example with ``image/source_id`` = its rank among the usable files."""
    index, data = item
    example = tf.train.Example.FromString(data)
    rank = bisect.bisect_left(usable, index)
    example.features.feature["image/source_id"].bytes_list.value[:] = [str(rank).encode()]
    return example.SerializeToString()


def build(pipeline: beam.Pipeline, job: RecordsJob) -> None:
    converted = (pipeline | "Work list" >> beam.io.ReadFromText(join(job.work, "work.txt"))
                 | "Convert" >> beam.ParDo(Convert(job)).with_outputs(results.REPORT,
                                                                      main="examples"))
    usable = (converted.examples | "Indices" >> beam.Keys()
              | "All" >> beam.combiners.ToList() | "Sorted" >> beam.Map(sorted))
    _ = (converted.examples
         | "Number" >> beam.Map(with_source_id, beam.pvalue.AsSingleton(usable))
         | "Shards" >> beam.io.WriteToTFRecord(
             job.output_path, num_shards=job.num_shards,
             shard_name_template="" if job.num_shards == 1 else None))
    _ = converted[results.REPORT] | "Report" >> beam.io.WriteToText(
        join(job.work, "report"), skip_if_empty=True)


def _check(xml_dir: str, image_dir: str, output_path: str, num_shards: int) -> None:
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise TfRecordError(None, f"num_shards must be an integer >= 1, got {num_shards!r}")
    for name, folder in (("xml_dir", xml_dir), ("image_dir", image_dir)):
        if not is_url(folder) and not Path(folder).is_dir():
            raise TfRecordError(folder, f"{name} is not a folder")
    if not is_url(output_path) and Path(output_path).is_dir():
        raise TfRecordError(output_path, "output_path is a folder; give a file name")


def prepare(xml_dir: str, image_dir: str, label_map: LabelMap, output_path: str,
            num_shards: int) -> RecordsJob:
    """Checks the arguments, lists the folders and writes the work folder."""
    _check(xml_dir, image_dir, output_path, num_shards)
    xml_names = [n for n in file_names(xml_dir) if n.lower().endswith(".xml")]
    if not xml_names:
        raise TfRecordError(xml_dir, "no .xml file in xml_dir")
    output_dir = posixpath.dirname(output_path) if is_url(output_path) else \
        str(Path(output_path).parent)
    work = join(output_dir, f".tfrecords_beam-{new_run()}")
    job = RecordsJob(xml_dir, image_dir, label_map, output_path, num_shards, work)
    write_atomic(join(work, "work.txt"), "".join(
        f"{i}\t{name}\n" for i, name in enumerate(xml_names)).encode("utf-8"))
    write_atomic(join(work, "images.json"), json.dumps(file_names(image_dir)).encode("utf-8"))
    return job


def _report(values: dict[str, int], lines: list[list[str]]) -> TfRecordReport:
    report = TfRecordReport(**{name: values.get(name, 0) for name in COUNTS})
    report.class_counts.update({name[len("class/"):]: value for name, value in values.items()
                                if name.startswith("class/") and value})
    for kind, name, problem in lines:
        (report.skipped if kind == "skipped" else report.dropped_boxes).append((name, problem))
    return report


def _outputs(job: RecordsJob, examples: int) -> list:
    """The shards, named as the local writer names them (tsoda.data.tfrecords.shard_paths); none
    (deleted) when no example was written, as locally."""
    names = [job.output_path] if job.num_shards == 1 else [
        f"{job.output_path}-{i:05d}-of-{job.num_shards:05d}" for i in range(job.num_shards)]
    if not examples:
        FileSystems.delete([name for name in names if FileSystems.exists(name)])
        return []
    return names if is_url(job.output_path) else [Path(name) for name in names]


def write_tfrecords_beam(xml_dir, image_dir, label_map: LabelMap, output_path,
                         num_shards: int, beam_args: list[str]) -> TfRecordReport:
    """:func:`tsoda.data.tfrecords.write_tfrecords` as a Beam pipeline with Beam's options
    ``beam_args`` (``--runner``...): same examples, same report.

    Raises:
        TfRecordError: a missing folder, no XML file, num_shards < 1.
    """
    job = prepare(str(xml_dir), str(image_dir), label_map, str(output_path), num_shards)
    try:
        pipeline = beam.Pipeline(options=PipelineOptions(beam_args))
        build(pipeline, job)
        result = pipeline.run()
        result.wait_until_finish()
        report = _report(results.counters(result, NAMESPACE),
                         results.take_report(join(job.work, "report")))
        report.output_paths = _outputs(job, report.examples)
    finally:
        remove_folder(job.work)
    return report
