"""The end-of-run summary: counts, failures with reasons, and the exit status."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from auto_annotate.images import IMAGE_EXTENSIONS

__all__ = ["Summary"]

LOG = logging.getLogger("auto_annotate")
SUPPORTED = " ".join(sorted(IMAGE_EXTENSIONS))
_SKIP_WORDS = {"existing": "label file exists", "verified": "verified in LabelImg",
               "done": "no detection in an earlier identical run",
               "edited": "label file edited since auto_annotate wrote it, kept",
               "foreign": "label file not written by auto_annotate, kept",
               "unreadable": "existing label file unreadable, kept"}


@dataclass
class Summary:
    """What a run did. ``failed`` and ``box_errors`` hold (file, reason) pairs."""

    found: int = 0
    annotated: int = 0
    empty: int = 0
    empty_written: int = 0
    boxes_written: int = 0
    skipped: Counter = field(default_factory=Counter)
    failed: list[tuple[str, str]] = field(default_factory=list)
    box_errors: list[tuple[str, str]] = field(default_factory=list)
    manifest: Path | None = None
    seconds: float = 0.0
    error: str | None = None
    ignored: dict[str, int] = field(default_factory=dict)

    def fail(self, path: str | Path, reason: str) -> None:
        self.failed.append((str(path), reason))
        LOG.error("%s: %s", path, reason)

    def box_error(self, path: str | Path, reason: str) -> None:
        self.box_errors.append((str(path), reason))
        LOG.error("%s: %s", path, reason)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def count(self, status: str, boxes: int, xml_written: bool) -> None:
        """Counts one finished image ('annotated' or 'empty')."""
        if status == "annotated":
            self.annotated += 1
        else:
            self.empty += 1
            self.empty_written += int(xml_written)
        self.boxes_written += boxes

    @property
    def processed(self) -> int:
        return self.annotated + self.empty

    @property
    def exit_code(self) -> int:
        """0 when every image was handled and every box written; 1 otherwise."""
        return 1 if self.failed or self.box_errors or self.error or not self.found else 0

    def format(self) -> str:
        """The human-readable summary, several lines."""
        skipped = ", ".join(f"{n} {_SKIP_WORDS.get(k, k)}"
                            for k, n in sorted(self.skipped.items()))
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"images found:      {self.found}" + (" (warning: no supported image; "
                                                  f"supported: {SUPPORTED})" * (not self.found)),
            f"annotated:         {self.annotated}",
            f"no detection:      {self.empty} ({self.empty_written} empty XML written)",
            f"skipped:           {sum(self.skipped.values())}"
            + (f" ({skipped})" if skipped else ""),
            f"failed:            {len(self.failed)}",
            f"boxes written:     {self.boxes_written}",
        ]
        if self.ignored:
            formats = ", ".join(f"{count} {suffix}" for suffix, count in self.ignored.items())
            lines.append(f"ignored:           {sum(self.ignored.values())} file(s) in "
                         f"unsupported image formats ({formats})")
        if self.box_errors:
            lines.append(f"boxes dropped:     {len(self.box_errors)} (class id not in label map)")
        lines += [f"  {path}: {reason}" for path, reason in self.failed + self.box_errors]
        lines.append(f"time:              {self.seconds:.1f} s ({rate:.1f} images/s)")
        if self.manifest is not None:
            lines.append(f"scores manifest:   {self.manifest}")
        if self.error is not None:
            lines.append(f"error: {self.error}; the run stopped there (labels written so far "
                         "are kept, each with its record)")
        return "\n".join(lines)
