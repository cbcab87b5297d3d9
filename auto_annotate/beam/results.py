"""What a Beam run reports back to its driver: counters (Beam metrics) and a report of
problems (one JSON list per line), written as text shards beside the outputs and read
back, then deleted, by the driver. Shared by the labelling and TFRecord pipelines."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.pvalue import TaggedOutput

from auto_annotate.beam.files import is_url, read_bytes, remove_folder

__all__ = ["REPORT", "count", "counters", "report_line", "take_report"]

REPORT = "report"


def count(namespace: str, name: str, value: int = 1) -> None:
    """Adds to one of the run's counters."""
    Metrics.counter(namespace, name).inc(value)


def report_line(*fields: str) -> TaggedOutput:
    """A line of the run's report (for the ``report`` output of a transform)."""
    return TaggedOutput(REPORT, json.dumps([str(f) for f in fields], ensure_ascii=False))


def counters(result, namespace: str) -> dict[str, int]:
    """A finished pipeline's counters (committed values, else attempted ones)."""
    found = result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]
    values: dict[str, int] = {}
    for metric in found:
        value = metric.committed if metric.committed is not None else metric.attempted
        values[metric.key.metric.name] = values.get(metric.key.metric.name, 0) + int(value)
    return values


def take_report(prefix: str) -> list[list[str]]:
    """The report's lines (sorted), read from its shards, which are then deleted with
    their folder."""
    paths = [m.path for m in FileSystems.match([prefix + "*"])[0].metadata_list]
    lines = [json.loads(line) for path in paths
             for line in read_bytes(path).decode("utf-8").splitlines() if line.strip()]
    remove_folder(posixpath.dirname(prefix) if is_url(prefix) else str(Path(prefix).parent))
    return sorted(lines)
