"""The JSON Lines manifest kept beside the XML: one record per processed image.

VOC has no place for scores, so the manifest keeps them, together with each image's
status, so a reviewer can sort by confidence and find images with no detection.
Records are appended; the latest record of an image is the one that counts. A line cut
short by a crash is skipped when reading.

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
from datetime import datetime, timezone
from pathlib import Path

from auto_annotate.errors import AnnotateError

LOG = logging.getLogger(__name__)
MANIFEST_NAME = "auto_annotate_manifest.jsonl"
SHARD_PATTERN = "auto_annotate_manifest-*.jsonl"
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


def shard_prefix(run: str) -> str:
    """The file-name prefix of one Beam run's manifest shards (``run``: its UTC time and
    id, so names sort by run)."""
    return f"auto_annotate_manifest-{run}"


def records_of_lines(lines: Iterable[str], source: str | Path) -> dict[str, dict]:
    """The last record per image (the ``image`` key) among JSON lines; lines that are
    not records (a line cut short by a crash) are skipped with a warning."""
    records: dict[str, dict] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[record["image"]] = record
        except (json.JSONDecodeError, KeyError, TypeError):
            LOG.warning("%s: line %d is not a manifest record; ignored", source, number)
    return records


def record_time(record: dict) -> datetime:
    """When a record was written; records without a readable time count as oldest."""
    try:
        return datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S%z")
    except (KeyError, TypeError, ValueError):
        return _OLDEST


def source_rank(name: str) -> tuple[int, str]:
    """The order of manifest files for ties in time: the file, then shards by name."""
    return (0, "") if name == MANIFEST_NAME else (1, name)


def merge_latest(files: Iterable[tuple[str, dict[str, dict]]]) -> dict[str, dict]:
    """Latest record per image over several files' ``records_of_lines`` results, given
    as (file name, records)."""
    best: dict[str, tuple] = {}
    for name, records in files:
        for image, record in records.items():
            key = (record_time(record), source_rank(name))
            if image not in best or key >= best[image][0]:
                best[image] = (key, record)
    return {image: record for image, (_, record) in best.items()}


def _read_file(path: Path) -> dict[str, dict]:
    with path.open(encoding="utf-8") as stream:
        return records_of_lines(stream, path)


def read_manifest(path: str | Path) -> dict[str, dict]:
    """Latest record per image (the ``image`` key) in the manifest at ``path`` and the
    Beam shards beside it; a missing file gives {}."""
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

    def append(self, record: dict) -> bool:
        """Appends one record; returns False (``error`` says why) when it was not written."""
        line = json.dumps(record, ensure_ascii=False) + "\n"
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
