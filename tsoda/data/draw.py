"""Drawing TFRecord examples back onto their images, to check that boxes and pixels agree.

Images are decoded with tf.io.decode_image, as a trainer does, so a box drawn off its
object shows a frame mismatch between the pixels and the labels.
"""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from auto_annotate.fileio import atomic_write_bytes
from tsoda.data.read import read_tfrecords

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def draw_example(parsed: dict) -> Image.Image:
    """The decoded record image with its boxes and class names drawn on it."""
    image = Image.fromarray(parsed["image"])
    pen = ImageDraw.Draw(image)
    line = max(2, round(min(image.size) / 200))
    font = ImageFont.load_default(size=max(12, min(image.size) // 30))
    for (x0, y0, x1, y1), text in zip(parsed["boxes_xyxy_pixel"].tolist(), parsed["class_texts"],
                                      strict=True):
        pen.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=(0, 255, 0),
                      width=line)
        left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
        label_y = y0 - (bottom - top) - 4 if y0 >= (bottom - top) + 4 else y0 + line
        pen.rectangle([x0, label_y, x0 + right - left + 4, label_y + bottom - top + 4],
                      fill=(0, 255, 0))
        pen.text((x0 + 2 - left, label_y + 2 - top), text, fill=(0, 0, 0), font=font)
    return image


def safe_name(source_id: str, filename: str, taken: set[str]) -> str:
    """``<source_id>_<image stem>.png`` reduced to a plain file name: characters other than
    letters, digits, ``-``, ``_`` and ``.`` become ``_``, leading dots are dropped (no
    ``..``, no hidden file, no folder part), and a name already in ``taken`` gets a number."""
    stem = filename.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    base = _UNSAFE.sub("_", f"{source_id}_{stem}")[:150].lstrip(".") or "record"
    name, number = f"{base}.png", 1
    while name in taken:
        number += 1
        name = f"{base}-{number}.png"
    taken.add(name)
    return name


def draw_tfrecords(pattern: str | Path, output_dir: str | Path, count: int = 4) -> list[Path]:
    """Draws the first ``count`` records as ``<source_id>_<image stem>.png`` files in
    ``output_dir`` (names made safe by :func:`safe_name`, so a crafted record cannot write
    elsewhere).

    Returns:
        The PNG files written.
    """
    output_dir = Path(output_dir)
    written, taken = [], set()
    for parsed in itertools.islice(read_tfrecords(pattern), count):
        buffer = io.BytesIO()
        draw_example(parsed).save(buffer, format="PNG")
        path = output_dir / safe_name(parsed["source_id"], parsed["filename"], taken)
        atomic_write_bytes(path, buffer.getvalue())
        written.append(path)
    return written
