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

import hashlib
import io
import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from auto_annotate import boxes as box_ops
from auto_annotate.errors import AnnotateError, ImageError, VocError
from auto_annotate.images import DecodedImage, decode_image, list_images
from auto_annotate.label_map import LabelMap, load_label_map
from auto_annotate.voc import VocAnnotation, read_voc, to_upright_frame

logger = logging.getLogger(__name__)

JPEG_QUALITY = 95
_COPYABLE_FORMATS = {"JPEG": "jpeg", "PNG": "png"}
_COPYABLE_MODES = frozenset({"RGB", "L"})


class TfRecordError(AnnotateError):
    """A usage error (missing folder, bad argument) or a file that cannot be paired."""


@dataclass(frozen=True)
class EncodedImage:
    """The bytes stored as ``image/encoded``.

    Attributes:
        data: encoded bytes (no EXIF orientation to apply: they decode upright).
        format: "jpeg" or "png".
        hw: (height, width) of the decoded pixels, i.e. of the upright label frame.
    """

    data: bytes
    format: str
    hw: tuple[int, int]


@dataclass(frozen=True)
class RecordObjects:
    """The boxes of one example that go into the record.

    Attributes:
        boxes_xyxy: float32 (N, 4) pixel ``xmin, ymin, xmax, ymax`` in the upright frame,
            clipped to the image, each with a positive area.
        class_ids: label-map ids (1-based).
        class_texts: class names as the label map spells them.
        difficult: VOC difficult flags.
    """

    boxes_xyxy: np.ndarray
    class_ids: tuple[int, ...] = ()
    class_texts: tuple[str, ...] = ()
    difficult: tuple[bool, ...] = ()


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


def encode_for_record(data: bytes, image: DecodedImage) -> EncodedImage:
    """Chooses the ``image/encoded`` bytes so that TensorFlow decodes the upright pixels.

    Args:
        data: the image file's bytes.
        image: the same file decoded by :func:`auto_annotate.images.decode_image`.
    """
    with Image.open(io.BytesIO(data)) as probe:
        file_format, mode = probe.format, probe.mode
    if image.orientation == 1 and file_format in _COPYABLE_FORMATS and mode in _COPYABLE_MODES:
        return EncodedImage(data, _COPYABLE_FORMATS[file_format], image.hw)
    buffer = io.BytesIO()
    if file_format == "JPEG":
        Image.fromarray(image.upright).save(buffer, format="JPEG", quality=JPEG_QUALITY,
                                          subsampling=0)  # 4:4:4 keeps the colour detail
        return EncodedImage(buffer.getvalue(), "jpeg", image.hw)
    Image.fromarray(image.upright).save(buffer, format="PNG")
    return EncodedImage(buffer.getvalue(), "png", image.hw)


def select_objects(annotation: VocAnnotation,
                   label_map: LabelMap) -> tuple[RecordObjects, list[str]]:
    """Keeps the boxes with a known class and a positive area after clipping.

    Args:
        annotation: in the frame of the encoded image (its ``size`` is that image's).
        label_map: class names are matched case-insensitively.

    Returns:
        The kept objects, and one problem line per dropped box.
    """
    image_hw = (annotation.height, annotation.width)
    kept, problems = [], []
    for index, obj in enumerate(annotation.objects):
        class_id = label_map.id_of(obj.name)
        if class_id is None:
            problems.append(f"object {index} {obj.name!r}: class not in the label map")
            continue
        box = box_ops.clip_xyxy(np.array(obj.box, dtype=np.float32), image_hw)[0]
        if box[2] <= box[0] or box[3] <= box[1]:
            problems.append(f"object {index} {obj.name!r}: box {tuple(obj.box)} has no area "
                            f"inside the {annotation.width}x{annotation.height} image")
            continue
        kept.append((box, class_id, label_map.name_of(class_id), obj.difficult))
    boxes = np.array([k[0] for k in kept], dtype=np.float32).reshape(-1, 4)
    ids, texts, difficult = (tuple(k[i] for k in kept) for i in (1, 2, 3))
    return RecordObjects(boxes, ids, texts, difficult), problems


def _bytes(values: Iterable[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _floats(values: Iterable[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def _ints(values: Iterable[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def build_example(image: EncodedImage, objects: RecordObjects, filename: str,
                  source_id: int) -> tf.train.Example:
    """The ``tf.train.Example`` of one image (Object Detection API keys).

    Args:
        image: encoded bytes; ``objects`` are in the frame of its ``hw``.
        objects: pixel xyxy boxes, normalized here by ``image.hw``.
        filename: stored as ``image/filename``.
        source_id: stored as its decimal string (Model Garden calls ``int()`` on it).
    """
    height, width = image.hw
    boxes = objects.boxes_xyxy.astype(np.float64)
    normalized = np.clip(boxes / [width, height, width, height], 0.0, 1.0)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    feature = {
        "image/encoded": _bytes([image.data]),
        "image/format": _bytes([image.format.encode()]),
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/filename": _bytes([filename.encode("utf-8")]),
        "image/source_id": _bytes([str(source_id).encode()]),
        "image/key/sha256": _bytes([hashlib.sha256(image.data).hexdigest().encode()]),
        "image/object/class/text": _bytes(t.encode("utf-8") for t in objects.class_texts),
        "image/object/class/label": _ints(objects.class_ids),
        "image/object/difficult": _ints(int(d) for d in objects.difficult),
        "image/object/area": _floats(area),
        # difficult objects are ignore regions in training (tsoda/ignore_regions.py)
        "image/object/is_crowd": _ints(int(d) for d in objects.difficult),
    }
    for column, key in enumerate(("xmin", "ymin", "xmax", "ymax")):
        feature[f"image/object/bbox/{key}"] = _floats(normalized[:, column])
    return tf.train.Example(features=tf.train.Features(feature=feature))


def example_from_annotation(annotation: VocAnnotation, image: EncodedImage, label_map: LabelMap,
                            filename: str, source_id: int
                            ) -> tuple[tf.train.Example, RecordObjects, list[str]]:
    """Pure conversion of one annotation (already in the encoded image's frame).

    Returns:
        The example, the objects it holds, and one problem line per dropped box.

    Raises:
        VocError: when the annotation's size is not the encoded image's size, or when it
            has boxes but none is usable (it must not train as a background image).
    """
    if (annotation.height, annotation.width) != image.hw:
        raise VocError(filename, f"size {annotation.width}x{annotation.height} is not the "
                                 f"image's {image.hw[1]}x{image.hw[0]}")
    objects, problems = select_objects(annotation, label_map)
    if annotation.objects and not objects.class_ids:  # never a background image by accident
        raise VocError(filename, f"none of its boxes can be used ({'; '.join(problems)}); "
                                 "skipped, as it would train as an image with no object")
    return build_example(image, objects, filename, source_id), objects, problems


def _image_index(image_dir: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for entry in list_images(image_dir):
        index.setdefault(entry.stem, []).append(entry)
    return index


def find_image(xml_path: Path, annotation: VocAnnotation, image_dir: Path,
               index: dict[str, list[Path]]) -> Path:
    """The image of a VOC file: its ``<filename>`` in ``image_dir``, else the XML's stem
    with a .jpg, .jpeg, .png or .bmp suffix (any case).

    Raises:
        TfRecordError: when no image or several images match.
    """
    name = Path(annotation.filename.replace("\\", "/")).name
    if name and (image_dir / name).is_file():
        return image_dir / name
    candidates = index.get(xml_path.stem, [])
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise TfRecordError(xml_path, "several images match its stem: "
                                      + ", ".join(p.name for p in candidates))
    raise TfRecordError(xml_path, f"no image {name!r} nor {xml_path.stem}"
                                  f"{{.jpg,.jpeg,.png,.bmp}} in {image_dir}")


def _convert_file(xml_path: Path, locate, label_map: LabelMap, source_id: int):
    annotation = read_voc(xml_path)
    image_path = locate(xml_path, annotation)
    decoded = decode_image(image_path)
    try:
        data = image_path.read_bytes()
    except OSError as error:
        raise ImageError(image_path, f"cannot read ({error.strerror or error})") from None
    annotation = to_upright_frame(annotation, decoded.stored_hw, decoded.orientation)
    encoded = encode_for_record(data, decoded)
    return example_from_annotation(annotation, encoded, label_map, image_path.name, source_id)


def _problem(error: AnnotateError, xml_path: Path) -> str:
    if error.path is not None and error.path.name not in (xml_path.name, ""):
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
            report.skipped.append((xml_path.name, _problem(error, xml_path)))
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
    index = _image_index(image_dir)
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
