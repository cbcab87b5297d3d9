"""Reading TFRecords of tf.train.Example with the Object Detection API keys back into
NumPy, as tests and the drawing check need them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from auto_annotate import boxes as box_ops
from tsoda.data.tfrecords import TfRecordError

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature((), tf.string),
    "image/format": tf.io.FixedLenFeature((), tf.string, b""),
    "image/height": tf.io.FixedLenFeature((), tf.int64, -1),
    "image/width": tf.io.FixedLenFeature((), tf.int64, -1),
    "image/filename": tf.io.FixedLenFeature((), tf.string, b""),
    "image/source_id": tf.io.FixedLenFeature((), tf.string, b""),
    **{f"image/object/bbox/{k}": tf.io.VarLenFeature(tf.float32)
       for k in ("xmin", "ymin", "xmax", "ymax")},
    "image/object/class/text": tf.io.VarLenFeature(tf.string),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    "image/object/difficult": tf.io.VarLenFeature(tf.int64),
    "image/object/area": tf.io.VarLenFeature(tf.float32),
}


def parse_example(serialized: bytes) -> dict:
    """Decodes one record the way a trainer does (``tf.io.decode_image``, EXIF ignored).

    Returns:
        A dict with ``image`` uint8 (H, W, 3); ``encoded`` the stored bytes;
        ``boxes_yxyx_normalized`` float32 (N, 4); ``boxes_xyxy_pixel`` float32 (N, 4) in the
        decoded image's frame; ``class_ids`` int64 (N,); ``class_texts`` list of str;
        ``difficult`` int64 (N,); ``area`` float32 (N,) pixels; ``filename``,
        ``source_id``, ``format`` str; ``height``, ``width`` int as stored in the record.
    """
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    image = tf.io.decode_image(parsed["image/encoded"], channels=3,
                               expand_animations=False).numpy()

    def dense(key):
        return tf.sparse.to_dense(parsed[key]).numpy()

    yxyx = np.stack([dense(f"image/object/bbox/{k}") for k in ("ymin", "xmin", "ymax", "xmax")],
                    axis=1).astype(np.float32).reshape(-1, 4)
    return {
        "image": image,
        "encoded": parsed["image/encoded"].numpy(),
        "boxes_yxyx_normalized": yxyx,
        "boxes_xyxy_pixel": box_ops.normalized_yxyx_to_pixel_xyxy(yxyx, image.shape[:2]),
        "class_ids": dense("image/object/class/label"),
        "class_texts": [t.decode("utf-8") for t in dense("image/object/class/text")],
        "difficult": dense("image/object/difficult"),
        "area": dense("image/object/area"),
        **{key: parsed[f"image/{key}"].numpy().decode("utf-8")
           for key in ("filename", "source_id", "format")},
        "height": int(parsed["image/height"]),
        "width": int(parsed["image/width"]),
    }


def read_tfrecords(pattern: str | Path | list) -> Iterator[dict]:
    """Parses every record of one file, a glob pattern, or a list of files, in order.

    Raises:
        TfRecordError: when nothing matches or a record is corrupt.
    """
    patterns = [str(p) for p in pattern] if isinstance(pattern, list) else [str(pattern)]
    files = [f for p in patterns for f in (sorted(tf.io.gfile.glob(p)) or [p])]
    missing = [f for f in files if not tf.io.gfile.exists(f)]
    if missing or not files:
        raise TfRecordError(missing[0] if missing else None, "no such TFRecord file")
    try:
        for record in tf.data.TFRecordDataset(files):
            yield parse_example(record.numpy())
    except tf.errors.OpError as error:
        raise TfRecordError(None, f"cannot read {', '.join(files)} ({error.message})") from None
