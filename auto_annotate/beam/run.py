"""The driver side of labelling on Beam: check the arguments and the model before any
work (as the local run does), run the pipeline, and build the local run's Summary from
the pipeline's metrics and its report of problems."""

from __future__ import annotations

import posixpath
import time
import uuid
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from auto_annotate.annotate import PREDEFINED_CLASSES, write_predefined_classes
from auto_annotate.api import model_id, one_model_path
from auto_annotate.beam.files import (
    is_url,
    load_label_map_anywhere,
    local_copy,
    read_bytes,
    write_atomic,
)
from auto_annotate.beam.pipeline import NAMESPACE, BeamJob, build
from auto_annotate.beam.results import counters, take_report
from auto_annotate.errors import AnnotateError
from auto_annotate.labelling import Options, predefined_classes_text
from auto_annotate.manifest import shard_prefix
from auto_annotate.model import load_detector, model_kind
from auto_annotate.summary import Summary

__all__ = ["COUNTS", "new_run", "prepare", "run", "summary_of", "write_class_list"]

COUNTS = ("found", "annotated", "empty", "empty_written", "boxes_written")


def new_run() -> str:
    """A run's name: its UTC start time (so shard names sort by run) and a random id."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def prepare(args) -> BeamJob:
    """The job of parsed command-line arguments (``python -m auto_annotate``'s flags).

    Raises:
        AnnotateError: a missing image folder, an unusable model or label map.
        ValueError: a bad threshold or unknown TTA views.
    """
    from auto_annotate.tta import check_views

    model = str(one_model_path(args.model_path, args.saved_model_path))
    imgs, tta = str(args.imgs_path), check_views(args.tta) if args.tta else ()
    if not is_url(imgs) and not Path(imgs).is_dir():
        raise AnnotateError(imgs, "image folder does not exist")
    label_map = load_label_map_anywhere(str(args.label_map_path))
    with local_copy(model) as local_model:
        model_kind(local_model)
        options = Options(threshold=args.threshold, recursive=args.recursive,
                          overwrite=args.overwrite, write_empty=args.write_empty,
                          progress=False, model_id=model_id(local_model, tta))
        load_detector(local_model, args.batch_size)  # refused here, before any image
    return BeamJob(imgs, str(args.xml_path or imgs), model, label_map, options, new_run(),
                   args.batch_size, tta)


def write_class_list(job: BeamJob) -> None:
    """LabelImg's class list in the XML folder, as the local run writes it."""
    try:
        if not is_url(job.xml_root):
            Path(job.xml_root).mkdir(parents=True, exist_ok=True)
            write_predefined_classes(Path(job.xml_root), job.label_map)
            return
        path = job.path(PREDEFINED_CLASSES)
        existing = read_bytes(path).decode("utf-8") if FileSystems.exists(path) else None
        text = predefined_classes_text(existing, job.label_map)
        if text is not None:
            write_atomic(path, text.encode("utf-8"))
    except OSError as error:
        raise AnnotateError(job.xml_root, f"cannot write to the XML folder ({error})") from None


def summary_of(values: dict[str, int], report: list[list[str]]) -> Summary:
    """The local run's Summary, from the counters and the report's lines."""
    summary = Summary(**{name: values.get(name, 0) for name in COUNTS})
    for name, value in sorted(values.items()):
        if name.startswith("skipped_") and value:
            summary.skipped[name[len("skipped_"):]] = value
        elif name.startswith("ignored") and value:
            summary.ignored[name[len("ignored"):]] = value
    for kind, path, reason in report:
        (summary.box_error if kind == "box" else summary.fail)(path, reason)
    return summary


def run(job: BeamJob, beam_args: list[str]) -> Summary:
    """Runs the labelling pipeline with Beam's options ``beam_args`` (runner...).

    Raises:
        AnnotateError: the XML folder cannot be written.
    """
    start = time.perf_counter()
    write_class_list(job)
    report = job.path(posixpath.join(f".auto_annotate_beam-{job.run}", "problems"))
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args))
    build(pipeline, job, report)
    result = pipeline.run()
    result.wait_until_finish()
    summary = summary_of(counters(result, NAMESPACE), take_report(report))
    summary.manifest = job.path(shard_prefix(job.run) + "-*.jsonl")
    summary.seconds = time.perf_counter() - start
    return summary
