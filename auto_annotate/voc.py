"""Pascal VOC XML exactly as LabelImg writes it, and a strict reader.

Boxes and ``size`` refer to the frame LabelImg shows, which is the upright image (LabelImg
reads images with Qt's EXIF auto-transform, which applies to JPEG files);
:func:`to_upright_frame` also reads files written in the stored frame by tools that ignore
EXIF.

On disk, coordinates are integer 1-based pixel indices with inclusive ends (a box over
pixel columns 0..9 is written xmin=1, xmax=10). In memory they are 0-based continuous
coordinates (xmin=0, xmax=10). The conversion happens in :func:`disk_box` and
:func:`_from_disk` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from lxml import etree

from auto_annotate import boxes as box_ops
from auto_annotate.errors import VocError
from auto_annotate.fileio import atomic_write_text

__all__ = ["VocAnnotation", "VocObject", "annotation_to_xml", "disk_box", "is_verified",
           "is_verified_data", "label_name", "label_path", "parse_voc", "read_voc",
           "to_upright_frame", "voc_pairs", "write_voc"]

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)


@dataclass(frozen=True)
class VocObject:
    """One labelled box: class name, pixel xyxy (0-based continuous), difficult flag."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool = False


@dataclass(frozen=True)
class VocAnnotation:
    """The content of one VOC file. ``width``/``height`` are the frame the boxes are in."""

    filename: str
    width: int
    height: int
    depth: int = 3
    objects: tuple[VocObject, ...] = field(default_factory=tuple)
    folder: str = ""
    path: str | None = None
    verified: bool = False
    database: str = "Unknown"


def disk_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """0-based continuous xyxy -> 1-based inclusive integers, clipped to the image."""
    xmin, ymin, xmax, ymax = (math.floor(float(v) + 0.5) for v in box)  # round half up
    xmin = min(max(xmin + 1, 1), width)
    ymin = min(max(ymin + 1, 1), height)
    xmax = min(max(xmax, xmin), width)
    ymax = min(max(ymax, ymin), height)
    return xmin, ymin, xmax, ymax


def _from_disk(xmin: float, ymin: float, xmax: float, ymax: float):
    """1-based inclusive integers -> 0-based continuous xyxy."""
    return (xmin - 1.0, ymin - 1.0, float(xmax), float(ymax))


def _sub(parent, tag: str, text: str | None = None):
    element = etree.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def _object_element(root, obj: VocObject, width: int, height: int) -> None:
    xmin, ymin, xmax, ymax = disk_box(obj.box, width, height)
    element = _sub(root, "object")
    _sub(element, "name", obj.name)
    _sub(element, "pose", "Unspecified")
    touches_edge = ymax == height or ymin == 1 or xmax == width or xmin == 1
    _sub(element, "truncated", "1" if touches_edge else "0")
    _sub(element, "difficult", "1" if obj.difficult else "0")
    bndbox = _sub(element, "bndbox")
    for tag, value in (("xmin", xmin), ("ymin", ymin), ("xmax", xmax), ("ymax", ymax)):
        _sub(bndbox, tag, str(value))


def annotation_to_xml(annotation: VocAnnotation) -> str:
    """Serializes an annotation exactly as LabelImg 1.8 does (element order, tab indent).

    ``truncated`` is set the way LabelImg sets it: 1 when the box touches an image edge.
    """
    root = etree.Element("annotation")
    if annotation.verified:
        root.set("verified", "yes")
    _sub(root, "folder", annotation.folder)
    _sub(root, "filename", annotation.filename)
    if annotation.path is not None:
        _sub(root, "path", annotation.path)
    _sub(_sub(root, "source"), "database", annotation.database)
    size = _sub(root, "size")
    _sub(size, "width", str(annotation.width))
    _sub(size, "height", str(annotation.height))
    _sub(size, "depth", str(annotation.depth))
    _sub(root, "segmented", "0")
    for obj in annotation.objects:
        _object_element(root, obj, annotation.width, annotation.height)
    etree.indent(root, space="\t")
    return etree.tostring(root, encoding="unicode") + "\n"


def _text(element, tag: str, source, required: bool = True) -> str | None:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise VocError(source, f"<{element.tag}> has no <{tag}>")
        return None
    return child.text.strip()


def _number(element, tag: str, source) -> float:
    value = _text(element, tag, source)
    try:
        return float(value)
    except ValueError:
        raise VocError(source, f"<{tag}> is not a number: {value!r}") from None


def _parse_object(element, source) -> VocObject:
    name = _text(element, "name", source)
    bndbox = element.find("bndbox")
    if bndbox is None:
        raise VocError(source, f"object {name!r} has no <bndbox>")
    xmin, ymin, xmax, ymax = (_number(bndbox, t, source) for t in ("xmin", "ymin", "xmax", "ymax"))
    if xmax < xmin or ymax < ymin:
        raise VocError(source, f"object {name!r} has xmax < xmin or ymax < ymin: "
                               f"({xmin}, {ymin}, {xmax}, {ymax})")
    difficult = _text(element, "difficult", source, required=False)
    return VocObject(name, _from_disk(xmin, ymin, xmax, ymax), difficult not in (None, "0"))


def parse_voc(text: str | bytes, source: str | Path = "<xml>") -> VocAnnotation:
    """Parses VOC XML by tag name (never by position).

    Raises:
        VocError: malformed XML, a missing or non-positive size, an object without name or
            box, a non-numeric coordinate, or a box with max < min.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as error:
        raise VocError(source, f"malformed XML ({error})") from None
    if root.tag != "annotation":
        raise VocError(source, f"root element is <{root.tag}>, expected <annotation>")
    size = root.find("size")
    if size is None:
        raise VocError(source, "no <size>")
    width, height = int(_number(size, "width", source)), int(_number(size, "height", source))
    if width <= 0 or height <= 0:
        raise VocError(source, f"size {width}x{height} is not positive")
    depth = _text(size, "depth", source, required=False)
    return VocAnnotation(
        filename=_text(root, "filename", source, required=False) or "",
        width=width, height=height, depth=int(depth) if depth and depth.isdigit() else 3,
        objects=tuple(_parse_object(obj, source) for obj in root.findall("object")),
        folder=_text(root, "folder", source, required=False) or "",
        path=_text(root, "path", source, required=False),
        verified=root.get("verified") == "yes")


def read_voc(path: str | Path) -> VocAnnotation:
    """Reads and parses a VOC file; raises VocError naming the file on any problem."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise VocError(path, f"cannot read ({error.strerror or error})") from None
    return parse_voc(data, path)


def label_name(image_name: str) -> str:
    """The file name of an image's VOC file: its stem and ``.xml`` (``a.jpg`` -> ``a.xml``)."""
    return Path(image_name).stem + ".xml"


def label_path(image: str | Path, xml_root: str | Path | None = None) -> Path:
    """The one rule pairing an image with its VOC file, everywhere in the project.

    Without ``xml_root``: ``<stem>.xml`` beside the image. With it: ``image`` is the path
    relative to the image folder, and its sub-folder is mirrored under ``xml_root``
    (``sub/a.jpg`` -> ``xml_root/sub/a.xml``), as LabelImg's save folder and auto_annotate
    lay it out.
    """
    image = Path(image)
    folder = image.parent if xml_root is None else Path(xml_root) / image.parent
    return folder / label_name(image.name)


def voc_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """(image, VOC file) for every image of ``folder`` that has its VOC file beside it."""
    from auto_annotate.images import list_images

    pairs = [(image, label_path(image)) for image in list_images(folder)]
    return [(image, xml) for image, xml in pairs if xml.is_file()]


def write_voc(path: str | Path, annotation: VocAnnotation) -> None:
    """Writes an annotation atomically."""
    atomic_write_text(path, annotation_to_xml(annotation))


def is_verified(path: str | Path) -> bool:
    """True when the VOC file at ``path`` carries ``verified="yes"``.

    Raises:
        VocError: when the file cannot be read or parsed.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise VocError(path, f"cannot read existing XML ({error})") from None
    return is_verified_data(data, path)


def is_verified_data(data: bytes, source: str | Path) -> bool:
    """True when the VOC XML ``data`` (read from ``source``) carries ``verified="yes"``.

    Raises:
        VocError: naming ``source``, when the data is not well-formed XML.
    """
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as error:
        raise VocError(source, f"cannot read existing XML ({error})") from None
    return root.get("verified") == "yes"


def to_upright_frame(annotation: VocAnnotation, stored_hw: tuple[int, int],
                     orientation: int) -> VocAnnotation:
    """Returns the annotation with its boxes in the upright frame of its image.

    VOC files refer to the frame LabelImg shows: the upright image (EXIF applied to JPEGs).
    Tools that ignore EXIF write the stored frame instead; their ``size`` then equals the
    stored size, which tells them apart when the orientation swaps the axes (5-8). When
    ``size`` fits both frames (orientations 2-4, or a square image) the upright frame is
    assumed, as LabelImg writes it.

    Args:
        annotation: as read from disk.
        stored_hw: (height, width) of the image's stored pixels.
        orientation: the EXIF orientation LabelImg applies (1 for non-JPEG files).

    Raises:
        VocError: when ``size`` matches neither frame.
    """
    stored_h, stored_w = stored_hw
    upright_h, upright_w = box_ops.upright_hw(stored_hw, orientation)
    size = (annotation.height, annotation.width)
    if size not in ((upright_h, upright_w), (stored_h, stored_w)):
        raise VocError(annotation.filename or None,
                       f"size {annotation.width}x{annotation.height} matches neither the "
                       f"image ({upright_w}x{upright_h} upright, {stored_w}x{stored_h} stored)")
    if size == (upright_h, upright_w):
        return annotation
    boxes = np.array([obj.box for obj in annotation.objects], dtype=np.float32).reshape(-1, 4)
    mapped = box_ops.stored_to_upright(boxes, stored_hw, orientation)
    objects = tuple(replace(obj, box=tuple(float(v) for v in box))
                    for obj, box in zip(annotation.objects, mapped, strict=True))
    return replace(annotation, width=upright_w, height=upright_h, objects=objects)
