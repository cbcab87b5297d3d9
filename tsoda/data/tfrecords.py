"""Pascal VOC XML + images -> sharded TFRecords of ``tf.train.Example``, and back.

The records use the Object Detection API keys that TF Model Garden's
``TfExampleDecoder`` reads. Frames: VOC boxes and ``size`` refer to the upright image (what
LabelImg shows; see :func:`auto_annotate.voc.to_upright_frame`), while TensorFlow's
decoders ignore EXIF. So ``image/encoded`` always decodes to the upright pixels: files whose
EXIF orientation is not 1 are re-encoded upright (JPEG, quality 95); JPEG and PNG files in
RGB or gray are copied byte for byte; anything else is re-encoded as PNG.

Box conventions: the VOC reader gives pixel xyxy (0-based continuous); records hold
``xmin, ymin, xmax, ymax`` normalized by the encoded image's width and height, clipped to
[0, 1]; ``image/object/area`` is the clipped box area in pixels.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import tensorflow as tf

from auto_annotate.errors import AnnotateError, ImageError
from auto_annotate.images import IMAGE_EXTENSIONS, list_images
from auto_annotate.label_map import LabelMap, load_label_map
from auto_annotate.voc import VocAnnotation, read_voc
from tsoda.data.examples import (  # noqa: F401  (EncodedImage, RecordObjects, build_example: API)
    EncodedImage,
    RecordObjects,
    build_example,
    example_from_files,
)

logger = logging.getLogger(__name__)


class TfRecordError(AnnotateError):
    """A usage error (missing folder, bad argument) or a file that cannot be paired."""


@dataclass
class TfRecordReport:
    """What :func:`write_tfrecords` did. Problems are (XML file name, one-line problem)."""

    examples: int = 0
    negatives: int = 0
    boxes: int = 0
    class_counts: Counter = field(default_factory=Counter)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    dropped_boxes: list[tuple[str, str]] = field(default_factory=list)
    output_paths: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when examples were written, no file was skipped and no box was dropped."""
        return self.examples > 0 and not self.skipped and not self.dropped_boxes

    def format(self) -> str:
        """A human-readable summary, one problem per line."""
        lines = [f"{self.examples} examples ({self.negatives} without objects), "
                 f"{self.boxes} boxes, {len(self.output_paths)} file(s):"]
        lines += [f"  {path}" for path in self.output_paths]
        if not self.output_paths:
            lines.append("no usable example: no record file written")
        lines += [f"  class {name!r}: {count} boxes"
                  for name, count in sorted(self.class_counts.items())]
        if self.skipped:
            lines.append(f"{len(self.skipped)} file(s) skipped:")
            lines += [f"  {name}: {problem}" for name, problem in self.skipped]
        if self.dropped_boxes:
            lines.append(f"{len(self.dropped_boxes)} box(es) dropped:")
            lines += [f"  {name}: {problem}" for name, problem in self.dropped_boxes]
        return "\n".join(lines)


def image_index(names: Iterable[str]) -> dict[str, list[str]]:
    """Image file names by stem (supported image formats only), for :func:`image_name_for`."""
    index: dict[str, list[str]] = {}
    for name in names:
        if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
            index.setdefault(Path(name).stem, []).append(name)
    return index


def image_name_for(xml_name: str, annotation: VocAnnotation, is_file, index: dict[str, list[str]],
                   image_dir: str | Path) -> str:
    """The file name of a VOC file's image in ``image_dir``: its ``<filename>`` when
    ``is_file(name)``, else the only image with the XML's stem (any supported suffix).

    Raises:
        TfRecordError: when no image or several images match.
    """
    name = PurePosixPath(annotation.filename.replace("\\", "/")).name
    if name and is_file(name):
        return name
    candidates = index.get(Path(xml_name).stem, [])
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise TfRecordError(xml_name, "several images match its stem: " + ", ".join(candidates))
    raise TfRecordError(xml_name, f"no image {name!r} nor {Path(xml_name).stem}"
                                  f"{{.jpg,.jpeg,.png,.bmp}} in {image_dir}")


def find_image(xml_path: Path, annotation: VocAnnotation, image_dir: Path,
               index: dict[str, list[str]]) -> Path:
    """The image of a local VOC file; see :func:`image_name_for`."""
    return image_dir / image_name_for(xml_path.name, annotation,
                                      lambda name: (image_dir / name).is_file(), index, image_dir)


def _convert_file(xml_path: Path, locate, label_map: LabelMap, source_id: int):
    annotation = read_voc(xml_path)
    image_path = locate(xml_path, annotation)
    try:
        data = image_path.read_bytes()
    except OSError as error:
        raise ImageError(image_path, f"cannot read ({error.strerror or error})") from None
    return example_from_files(annotation, image_path, data, label_map, source_id)


def problem_of(error: AnnotateError, xml_name: str) -> str:
    """The report line of a skipped VOC file: the problem, naming the file it is about
    when that is not the VOC file itself (its image)."""
    if error.path is not None and error.path.name not in (xml_name, ""):
        return f"{error.path.name}: {error.problem}"
    return error.problem


def _serialized_examples(xml_paths: list[Path], locate, label_map: LabelMap,
                         report: TfRecordReport) -> Iterator[bytes]:
    """Yields one serialized example per usable XML file, updating ``report``;
    ``locate(xml_path, annotation)`` returns the image of a VOC file."""
    for xml_path in xml_paths:
        try:
            example, objects, problems = _convert_file(xml_path, locate, label_map,
                                                       report.examples)
        except AnnotateError as error:
            report.skipped.append((xml_path.name, problem_of(error, xml_path.name)))
            logger.info("skipped %s: %s", xml_path, report.skipped[-1][1])
            continue
        report.dropped_boxes += [(xml_path.name, problem) for problem in problems]
        report.examples += 1
        report.negatives += int(not objects.class_ids)
        report.boxes += len(objects.class_ids)
        report.class_counts.update(objects.class_texts)
        yield example.SerializeToString()


def shard_paths(output_path: str | Path, num_shards: int) -> list[Path]:
    """``output_path`` itself for one shard, else ``output_path-00000-of-0000N`` names."""
    output_path = Path(output_path)
    if num_shards == 1:
        return [output_path]
    return [output_path.with_name(f"{output_path.name}-{i:05d}-of-{num_shards:05d}")
            for i in range(num_shards)]


def _fsync(path: Path) -> None:
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())


def write_shards(records: Iterable[bytes], output_path: str | Path, num_shards: int) -> list[Path]:
    """Writes records round-robin (record i to shard i % num_shards), atomically.

    Each shard is written under a temporary name beside its final one and renamed only
    after every record was written; on any failure the temporary files are removed.
    Without any record nothing is written (no empty file is left) and [] is returned.
    """
    finals = shard_paths(output_path, num_shards)
    finals[0].parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temps = [path.with_name(f".{path.name}.{tag}.tmp") for path in finals]
    writers: list[tf.io.TFRecordWriter] = []
    count = 0
    try:
        writers = [tf.io.TFRecordWriter(str(path)) for path in temps]
        for count, record in enumerate(records, start=1):
            writers[(count - 1) % num_shards].write(record)
        for writer in writers:
            writer.close()
        if count == 0:
            for temp in temps:
                temp.unlink()
            return []
        for temp, final in zip(temps, finals, strict=True):
            _fsync(temp)
            os.replace(temp, final)
    except BaseException:
        for writer in writers:
            writer.close()
        for temp in temps:
            temp.unlink(missing_ok=True)
        raise
    return finals


def _check_inputs(xml_dir: Path, image_dir: Path, output_path: Path, num_shards: int) -> None:
    for name, folder in (("xml_dir", xml_dir), ("image_dir", image_dir)):
        if not folder.is_dir():
            raise TfRecordError(folder, f"{name} is not a folder")
    if output_path.is_dir():
        raise TfRecordError(output_path, "output_path is a folder; give a file name")
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise TfRecordError(None, f"num_shards must be an integer >= 1, got {num_shards!r}")


def write_tfrecords(xml_dir: str | Path, image_dir: str | Path, label_map: LabelMap | str | Path,
                    output_path: str | Path, num_shards: int = 1) -> TfRecordReport:
    """Converts every ``*.xml`` in ``xml_dir`` (sorted by name) into sharded TFRecords.

    Files that cannot be used (no image, malformed XML, undecodable image, a size that is
    neither the upright nor the stored one) are skipped, and boxes with an unknown class or
    no area are dropped; both are listed in the report and the batch goes on. Examples
    without boxes are kept as negatives. ``image/source_id`` is the example's index.

    Raises:
        TfRecordError: a folder is missing, no XML file is found, num_shards < 1, or the
            output cannot be written (nothing is left half-written).
        LabelMapError: the label map cannot be read.
    """
    xml_dir, image_dir, output_path = Path(xml_dir), Path(image_dir), Path(output_path)
    _check_inputs(xml_dir, image_dir, output_path, num_shards)
    if not isinstance(label_map, LabelMap):
        label_map = load_label_map(label_map)
    xml_paths = sorted(p for p in xml_dir.iterdir() if p.suffix.lower() == ".xml" and p.is_file())
    if not xml_paths:
        raise TfRecordError(xml_dir, "no .xml file in xml_dir")
    index = image_index(p.name for p in list_images(image_dir))
    return _write(xml_paths, lambda xml, annotation: find_image(xml, annotation, image_dir, index),
                  label_map, output_path, num_shards)


def _write(xml_paths: list[Path], locate, label_map: LabelMap, output_path: Path,
           num_shards: int) -> TfRecordReport:
    report = TfRecordReport()
    records = _serialized_examples(xml_paths, locate, label_map, report)
    try:
        report.output_paths = write_shards(records, output_path, num_shards)
    except (OSError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TfRecordError(output_path, f"cannot write TFRecords ({reason})") from None
    return report


def write_tfrecords_for_pairs(pairs: list[tuple[Path, Path]], label_map: LabelMap,
                              output_path: str | Path, num_shards: int = 1) -> TfRecordReport:
    """Like :func:`write_tfrecords`, for explicit (image, VOC file) pairs from any folders.

    Raises:
        TfRecordError: no pair, or an output that cannot be written.
    """
    if not pairs:
        raise TfRecordError(None, "no labelled image to write")
    if num_shards < 1:
        raise TfRecordError(output_path, f"num_shards must be at least 1, got {num_shards}")
    images = {Path(xml): Path(image) for image, xml in pairs}
    return _write(list(images), lambda xml, _: images[xml], label_map, Path(output_path),
                  num_shards)
