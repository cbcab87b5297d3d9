"""One Pascal VOC annotation and its image -> one ``tf.train.Example`` (Object Detection
API keys, as TF Model Garden's ``TfExampleDecoder`` reads them); see tsoda/data/tfrecords.py
for the frames and box conventions. Pure conversions, shared by the local writer and the
Beam pipeline (tsoda/data/beam.py).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import tensorflow as tf
from PIL import Image

from auto_annotate import boxes as box_ops
from auto_annotate.errors import VocError
from auto_annotate.images import DecodedImage, decode_image
from auto_annotate.label_map import LabelMap
from auto_annotate.voc import VocAnnotation, to_upright_frame

JPEG_QUALITY = 95
_COPYABLE_FORMATS = {"JPEG": "jpeg", "PNG": "png"}
_COPYABLE_MODES = frozenset({"RGB", "L"})



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
        # difficult objects are ignore regions in training (tsoda/modeling/ignore_regions.py)
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


def example_from_files(annotation: VocAnnotation, image_path: str | Path, data: bytes,
                       label_map: LabelMap, source_id: int):
    """The example of a VOC annotation and its image file's bytes: the image decoded with
    its EXIF orientation, the annotation brought into that upright frame, the bytes
    re-encoded only when needed. Returns what :func:`example_from_annotation` returns."""
    decoded = decode_image(image_path, data)
    annotation = to_upright_frame(annotation, decoded.stored_hw, decoded.orientation)
    encoded = encode_for_record(data, decoded)
    name = PurePosixPath(str(image_path)).name
    return example_from_annotation(annotation, encoded, label_map, name, source_id)
