"""The JSON Lines manifest kept beside the XML: one record per processed image.

VOC has no place for scores, so the manifest keeps them, together with each image's
status, so a reviewer can sort by confidence and find images with no detection.
Records are appended; the latest record of an image is the one that counts. A line cut
short by a crash is skipped when reading.

In memory a record is a :class:`ManifestRecord` with a :class:`Status`; its JSON line is
written by :meth:`ManifestRecord.to_line` and read by :meth:`ManifestRecord.from_line`,
nowhere else. The lines carry no schema version: the format has only grown (keys added
later read as their defaults in older lines; keys the reader does not know are ignored),
and a line that is not a record (cut short, unknown status, wrong types) is skipped with
a warning.

A run on Apache Beam (auto_annotate/beam/) writes its records as shards beside the file,
``auto_annotate_manifest-<run>-SSSSS-of-NNNNN.jsonl``; readers take the file and every
shard. Within one file the last line of an image counts; between files, the record with
the latest ``time`` (ties: the file, then the shard names, in order: shard names start
with their run's UTC time).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

from auto_annotate.errors import AnnotateError

__all__ = ["MANIFEST_NAME", "SHARD_PATTERN", "ManifestRecord", "ManifestWriter", "Status",
           "merge_latest", "read_manifest", "record_time", "records_of_lines", "shard_prefix",
           "source_rank"]

LOG = logging.getLogger(__name__)
MANIFEST_NAME = "auto_annotate_manifest.jsonl"
SHARD_PATTERN = "auto_annotate_manifest-*.jsonl"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


class Status(str, Enum):
    """What became of a processed image; the value is what the manifest holds."""

    ANNOTATED = "annotated"  # boxes at or above the threshold, written to its XML
    EMPTY = "empty"  # no box at or above the threshold
    FAILED = "failed"  # not labelled: ``error`` says why

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ManifestRecord:
    """One image's manifest record: one JSON object per line on disk.

    A failed record holds ``image``, ``status``, ``error`` and ``time`` only. The others
    describe the labelled image: its label-frame ``width`` and ``height`` in pixels and
    EXIF ``orientation``; the written ``boxes`` as in its XML (1-based inclusive integer
    xmin, ymin, xmax, ymax), their ``class_ids`` (label-map ids), ``classes`` (names) and
    ``scores``; how many detections fell below the ``threshold`` and the best of them
    (``below_threshold``, ``max_score_below``); the ``model`` id; problems with single boxes
    (``errors``); the label file written (``xml``, None when none) and its SHA-256
    (``xml_sha256``); ``time``, when the record was made (:data:`TIME_FORMAT`). Fields an
    older manifest lacks read as their defaults.
    """

    image: str
    status: Status
    time: str | None = None
    error: str | None = None
    width: int | None = None
    height: int | None = None
    orientation: int | None = None
    boxes: tuple[tuple[int, ...], ...] = ()
    class_ids: tuple[int, ...] = ()
    classes: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    below_threshold: int = 0
    max_score_below: float | None = None
    model: str = ""
    threshold: float | None = None
    errors: tuple[str, ...] = ()
    xml: str | None = None
    xml_sha256: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))

    @classmethod
    def failed(cls, image: str, reason: str, time: str) -> ManifestRecord:
        """The record of an image that could not be labelled."""
        return cls(image, Status.FAILED, time=time, error=reason)

    def to_line(self) -> str:
        """The record as its JSON line (no line end); the manifest's only writer."""
        if self.status is Status.FAILED:
            data = {"image": self.image, "status": self.status.value, "error": self.error,
                    "time": self.time}
        else:
            data = {"image": self.image, "width": self.width, "height": self.height,
                    "orientation": self.orientation, "boxes": [list(b) for b in self.boxes],
                    "class_ids": list(self.class_ids), "scores": list(self.scores),
                    "below_threshold": self.below_threshold,
                    "max_score_below": self.max_score_below, "model": self.model,
                    "threshold": self.threshold, "time": self.time,
                    "status": self.status.value, "classes": list(self.classes),
                    "errors": list(self.errors), "xml": self.xml}
            if self.xml_sha256 is not None:
                data["xml_sha256"] = self.xml_sha256
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_line(cls, line: str) -> ManifestRecord:
        """The record of a JSON line; the manifest's only reader. Keys it does not know are
        ignored; keys it lacks (an older manifest's) take their defaults.

        Raises:
            ValueError: the line is not a record (cut short, no image, an unknown status,
                a value of the wrong type); the message says what is wrong.
        """
        data = json.loads(line)  # json.JSONDecodeError is a ValueError
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if not isinstance(data.get("image"), str):
            raise ValueError("no image name")
        try:
            status = Status(data.get("status"))
        except ValueError:
            raise ValueError(f"unknown status {data.get('status')!r}") from None
        return cls(
            data["image"], status, time=_value(data, "time", str),
            error=_value(data, "error", str), width=_value(data, "width", int),
            height=_value(data, "height", int), orientation=_value(data, "orientation", int),
            boxes=tuple(_items(box, "boxes", int) for box in _items(data.get("boxes"), "boxes",
                                                                    list)),
            class_ids=_items(data.get("class_ids"), "class_ids", int),
            classes=_items(data.get("classes"), "classes", str),
            scores=_items(data.get("scores"), "scores", float),
            below_threshold=_value(data, "below_threshold", int) or 0,
            max_score_below=_value(data, "max_score_below", float),
            model=_value(data, "model", str) or "", threshold=_value(data, "threshold", float),
            errors=_items(data.get("errors"), "errors", str), xml=_value(data, "xml", str),
            xml_sha256=_value(data, "xml_sha256", str))


def _checked(value, key: str, kind: type):
    """``value`` if it is of ``kind`` (an int counts as a float; true/false as neither),
    else ValueError naming ``key``."""
    kinds = (int, float) if kind is float else kind
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise ValueError(f"{key}: {value!r} is not of type {kind.__name__}")
    return value


def _value(data: dict, key: str, kind: type):
    """``data[key]`` checked to be of ``kind``; None when missing or null."""
    value = data.get(key)
    return None if value is None else _checked(value, key, kind)


def _items(values, key: str, kind: type) -> tuple:
    """A JSON list's items, each checked to be of ``kind``; () for a missing list."""
    if values is None:
        return ()
    if not isinstance(values, list):
        raise ValueError(f"{key}: {values!r} is not a list")
    return tuple(_checked(value, key, kind) for value in values)


def shard_prefix(run: str) -> str:
    """The file-name prefix of one Beam run's manifest shards (``run``: its UTC time and
    id, so names sort by run)."""
    return f"auto_annotate_manifest-{run}"


def records_of_lines(lines: Iterable[str], source: str | Path) -> dict[str, ManifestRecord]:
    """The last record per image among JSON lines; lines that are not records (a line cut
    short by a crash) are skipped with a warning."""
    records: dict[str, ManifestRecord] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = ManifestRecord.from_line(line)
        except ValueError as error:
            LOG.warning("%s: line %d is not a manifest record (%s); ignored", source, number,
                        error)
            continue
        records[record.image] = record
    return records


def record_time(record: ManifestRecord) -> datetime:
    """When a record was written; records without a readable time count as oldest."""
    try:
        return datetime.strptime(record.time or "", TIME_FORMAT)
    except ValueError:
        return _OLDEST


def source_rank(name: str) -> tuple[int, str]:
    """The order of manifest files for ties in time: the file, then shards by name."""
    return (0, "") if name == MANIFEST_NAME else (1, name)


def merge_latest(files: Iterable[tuple[str, dict[str, ManifestRecord]]]
                 ) -> dict[str, ManifestRecord]:
    """Latest record per image over several files' ``records_of_lines`` results, given
    as (file name, records)."""
    best: dict[str, tuple] = {}
    for name, records in files:
        for image, record in records.items():
            key = (record_time(record), source_rank(name))
            if image not in best or key >= best[image][0]:
                best[image] = (key, record)
    return {image: record for image, (_, record) in best.items()}


def _read_file(path: Path) -> dict[str, ManifestRecord]:
    with path.open(encoding="utf-8") as stream:
        return records_of_lines(stream, path)


def read_manifest(path: str | Path) -> dict[str, ManifestRecord]:
    """Latest record per image in the manifest at ``path`` and the Beam shards beside it;
    a missing file gives {}."""
    path = Path(path)
    files = [path] if path.is_file() else []
    if path.name == MANIFEST_NAME and path.parent.is_dir():
        files += sorted(p for p in path.parent.glob(SHARD_PATTERN) if p.is_file())
    return merge_latest((p.name, _read_file(p)) for p in files)


class ManifestWriter:
    """Appends records, one JSON object per line, flushed after each record.

    Threads may append concurrently. A write that fails (disk full...) does not raise:
    it sets ``error`` and every later append is refused, so the caller can stop the run
    cleanly and report it once.

    Raises:
        AnnotateError: (on opening) when the manifest cannot be opened for appending.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.error: AnnotateError | None = None
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            cut_short = False
            if self.path.is_file() and self.path.stat().st_size > 0:
                with self.path.open("rb") as existing:
                    existing.seek(-1, os.SEEK_END)
                    cut_short = existing.read(1) != b"\n"
            self._stream = self.path.open("a", encoding="utf-8")
            if cut_short:  # a crash cut the last line short: start a fresh line
                self._stream.write("\n")
        except OSError as error:
            raise self._error(error) from None

    def _error(self, error: OSError) -> AnnotateError:
        return AnnotateError(self.path, f"cannot write the manifest "
                                        f"({error.strerror or error})")

    def append(self, record: ManifestRecord) -> bool:
        """Appends one record; returns False (``error`` says why) when it was not written."""
        line = record.to_line() + "\n"
        with self._lock:
            if self.error is not None:
                return False
            try:
                self._stream.write(line)
                self._stream.flush()
            except OSError as error:
                self.error = self._error(error)
                return False
        return True

    def close(self) -> None:
        with self._lock:
            if self._stream.closed:
                return
            try:
                self._stream.flush()
                os.fsync(self._stream.fileno())
            except OSError as error:
                self.error = self.error or self._error(error)
            finally:
                try:
                    self._stream.close()
                except OSError:  # the same unwritable data again; already reported
                    pass

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
