"""The JSON Lines manifest kept beside the XML: one record per processed image.

VOC has no place for scores, so the manifest keeps them, together with each image's
status, so a reviewer can sort by confidence and find images with no detection.
Records are appended; the latest record of an image is the one that counts. A line cut
short by a crash is skipped when reading.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from auto_annotate.errors import AnnotateError

LOG = logging.getLogger(__name__)
MANIFEST_NAME = "auto_annotate_manifest.jsonl"


def read_manifest(path: str | Path) -> dict[str, dict]:
    """Latest record per image (the ``image`` key); a missing file gives {}."""
    path = Path(path)
    records: dict[str, dict] = {}
    if not path.is_file():
        return records
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                records[record["image"]] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                LOG.warning("%s: line %d is not a manifest record; ignored", path, number)
    return records


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
