"""One image's labelling rules, shared by the local run (annotate.py) and the Beam pipeline
(auto_annotate/beam/): whether an existing label may be replaced, the manifest record, the
XML text, and LabelImg's class list.

These functions do no file access of their own: callers pass a ``read`` function that
returns a label file's bytes (None when it does not exist), so the same rules apply to
local files and to the URLs Beam's file systems reach.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from auto_annotate import voc
from auto_annotate.detections import Detections
from auto_annotate.errors import VocError
from auto_annotate.images import DecodedImage
from auto_annotate.label_map import LabelMap
from auto_annotate.manifest import TIME_FORMAT, ManifestRecord, Status

__all__ = ["BROKEN_LINK", "Decision", "Label", "Options", "decide", "failed_record",
           "image_location", "make_label", "not_overwriting", "now", "predefined_classes_text",
           "read_label_file", "shared_label", "write_blocked", "write_failure", "xml_text"]

LOG = logging.getLogger(__name__)
ReadLabel = Callable[[], "bytes | None"]
BROKEN_LINK = "broken symbolic link (its target does not exist)"


def shared_label(xml_name: str, names: str) -> str:
    """Why images whose label files would collide (a.jpg, a.png) are not labelled."""
    return f"label file {xml_name} would be shared by {names}; rename one of them"


def not_overwriting(error: Exception) -> str:
    """Why an image whose existing label cannot be read is not labelled again."""
    return f"{getattr(error, 'problem', error)}; not overwriting it"


def write_failure(xml, error: Exception) -> str:
    """Why an image's label could not be written."""
    return f"cannot write label {xml}: {error}"


@dataclass(frozen=True)
class Options:
    """How a run behaves; see the command-line help for each field."""

    threshold: float = 0.5
    recursive: bool = False
    overwrite: bool = False
    write_empty: bool = False
    workers: int = 2
    progress: bool = True
    model_id: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")


@dataclass(frozen=True)
class Decision:
    """What to do with an image: ``skip`` names why it is left alone (None: label it);
    ``replaces`` is the SHA-256 of the existing XML the run may replace (None: no XML)."""

    skip: str | None = None
    replaces: str | None = None


@dataclass(frozen=True)
class Label:
    """The outcome of one labelled image: its manifest ``record`` (status annotated or
    empty) and the XML ``text`` to write (None when no XML is due)."""

    record: ManifestRecord
    text: str | None


def read_label_file(path: str | Path) -> bytes | None:
    """A local label file's bytes, None when it does not exist.

    Raises:
        VocError: when it exists but cannot be read.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise VocError(path, f"cannot read existing XML ({error.strerror or error})") from None


def _existing(data: bytes, source, options: Options,
              previous: ManifestRecord | None) -> Decision:
    """Only a file this tool wrote (its hash is in the image's manifest record) and nobody
    changed since is replaced, and only with ``overwrite``."""
    if voc.is_verified_data(data, source):
        return Decision("verified")
    if not options.overwrite:
        return Decision("existing")
    recorded = previous.xml_sha256 if previous is not None else None
    if recorded is None:
        return Decision("foreign")
    digest = hashlib.sha256(data).hexdigest()
    return Decision(replaces=digest) if digest == recorded else Decision("edited")


def decide(read: ReadLabel, source, options: Options,
           previous: ManifestRecord | None) -> Decision:
    """Whether to label an image, given its label file (``read``) and its latest manifest
    record: verified files always, other labels unless ``overwrite`` (and then files a
    person edited), and images a previous identical run found empty, are skipped.

    Raises:
        VocError: an unreadable existing label with ``overwrite`` (never replaced); without
            it the file is kept and skipped as "unreadable".
    """
    try:
        data = read()
        if data is not None:
            return _existing(data, source, options, previous)
    except VocError as error:
        if options.overwrite:
            raise
        LOG.warning("%s; kept as it is", error)
        return Decision("unreadable")
    if options.overwrite or options.write_empty or previous is None:
        return Decision()
    same_run = (previous.status is Status.EMPTY and previous.model == options.model_id
                and previous.threshold == options.threshold)
    return Decision("done") if same_run else Decision()


def write_blocked(read: ReadLabel, source, options: Options, replaces: str | None,
                  text: str) -> str | None:
    """Checks again just before writing: a reviewer may have saved the file meanwhile.

    A file that already holds exactly ``text`` (this same label, e.g. written by an earlier
    attempt of a retried Beam bundle) is no conflict.

    Raises:
        VocError: the existing file cannot be read or parsed.
    """
    data = read()
    if data is None:
        return None
    if voc.is_verified_data(data, source):
        return "verified"
    digest = hashlib.sha256(data).hexdigest()
    if digest == hashlib.sha256(text.encode("utf-8")).hexdigest():
        return None
    if not options.overwrite:
        return "existing"
    return None if digest == replaces else "edited"


def now() -> str:
    """The time stamp of a manifest record."""
    return time.strftime(TIME_FORMAT)


def failed_record(rel: str, reason: str) -> ManifestRecord:
    """The manifest record of an image that could not be labelled."""
    return ManifestRecord.failed(rel, reason, now())


def _labelled(kept: Detections, label_map: LabelMap) -> tuple[Detections, list[str]]:
    """Keeps boxes whose class id is in the label map; one error per other box."""
    known = np.array([label_map.name_of(c) is not None for c in kept.class_ids], dtype=bool)
    errors = [f"class id {c} is not in the label map; box dropped"
              for c in kept.class_ids[~known]]
    return kept.select(known), errors


def _record(rel: str, image: DecodedImage, written: Detections, detections: Detections,
            label_map: LabelMap, options: Options, errors: list[str]) -> ManifestRecord:
    """The record of a labelled image whose ``written`` boxes are the kept ``detections``
    (its XML not yet known)."""
    height, width = image.hw
    below = detections.scores[detections.scores < np.float32(options.threshold)]
    return ManifestRecord(
        rel, Status.ANNOTATED if len(written) else Status.EMPTY, time=now(),
        width=width, height=height, orientation=image.orientation,
        boxes=tuple(voc.disk_box(box, width, height) for box in written.boxes),
        class_ids=tuple(int(c) for c in written.class_ids),
        classes=tuple(label_map.name_of(c) for c in written.class_ids),
        scores=tuple(round(float(s), 5) for s in written.scores),
        below_threshold=len(below),
        max_score_below=round(float(below.max()), 5) if len(below) else None,
        model=options.model_id, threshold=options.threshold, errors=tuple(errors))


def image_location(image: str | Path) -> tuple[str, str, str]:
    """(file name, folder name, absolute path) of an image as its XML names it; a URL
    (``gs://...``) is its own absolute path."""
    text = str(image)
    if "://" in text:
        return posixpath.basename(text), posixpath.basename(posixpath.dirname(text)), text
    path = Path(image)
    return path.name, path.parent.name, str(path.resolve())


def xml_text(image_path: str | Path, image: DecodedImage, kept: Detections,
             names: list[str]) -> str:
    """The VOC XML of a labelled image, as LabelImg writes it."""
    filename, folder, absolute = image_location(image_path)
    objects = tuple(voc.VocObject(n, tuple(float(v) for v in box))
                    for n, box in zip(names, kept.boxes, strict=True))
    return voc.annotation_to_xml(voc.VocAnnotation(
        filename=filename, width=image.hw[1], height=image.hw[0], depth=image.depth,
        objects=objects, folder=folder, path=absolute))


def make_label(rel: str, image_path: str | Path, xml_name: str, image: DecodedImage,
               detections: Detections, label_map: LabelMap, options: Options) -> Label:
    """Thresholds label-frame detections and builds the record and, when due, the XML.

    Args:
        rel: the image's path relative to the image folder (the record's ``image``).
        image_path: the image file (local path or URL), named in the XML.
        xml_name: the label file's name, recorded with its SHA-256.
    """
    kept, errors = _labelled(detections.at_or_above(options.threshold), label_map)
    record = _record(rel, image, kept, detections, label_map, options, errors)
    if not (len(kept) or options.write_empty):
        return Label(record, None)
    text = xml_text(image_path, image, kept, list(record.classes))
    return Label(replace(record, xml=xml_name,
                         xml_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest()), text)


def predefined_classes_text(existing: str | None, label_map: LabelMap) -> str | None:
    """LabelImg's class list: an existing list keeps its lines and gets the missing names;
    None when an existing list needs no change."""
    lines = existing.splitlines() if existing is not None else []
    present = {line.strip().lower() for line in lines}
    missing = [name for name in label_map.ordered_names() if name.lower() not in present]
    if existing is not None and not missing:
        return None
    return "".join(line + "\n" for line in lines + missing)
