"""Finding and decoding images: any common mode to upright 8-bit RGB, with EXIF applied."""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from auto_annotate.errors import ImageError

__all__ = ["IMAGE_EXTENSIONS", "OTHER_IMAGE_EXTENSIONS", "DecodedImage", "ImageScan",
           "decode_image", "list_images", "natural_key", "scan_images"]

# What LabelImg can show too (Qt's image readers). Qt applies the EXIF orientation of JPEG
# and TIFF files, not of PNG or WebP.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
# (Pillow names a JPEG with several pictures, as many cameras and phones write, "MPO")
_ORIENTED_FORMATS = frozenset({"JPEG", "MPO", "TIFF"})
# Image formats that are not labelled, named in the summary when a folder holds them.
OTHER_IMAGE_EXTENSIONS = frozenset({".gif", ".heic", ".heif", ".avif", ".jp2", ".jfif",
                                    ".ppm", ".pgm", ".pbm", ".tga", ".ico", ".psd", ".svg",
                                    ".dng", ".cr2", ".nef", ".arw", ".raw"})
_EXIF_ORIENTATION = 0x0112
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "F"})


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for a detector.

    Attributes:
        path: the file (a URL read through Beam's file systems stays a string).
        upright: uint8 (H, W, 3) RGB pixels with the EXIF orientation applied.
        stored_hw: (height, width) of the pixels as stored in the file (what LabelImg shows).
        orientation: the EXIF orientation (1-8) that turns the stored pixels upright.
        depth: 1 for grayscale files, 3 otherwise (the VOC ``size/depth``).
        prepared: the detector's own input made from ``upright`` in the decoding thread
            (``Detector.prepare``, e.g. a letterboxed array), or None.

    The label frame (what LabelImg shows, and what VOC files refer to) is the upright
    image: LabelImg reads images with Qt's EXIF auto-transform switched on.
    """

    path: Path | str
    upright: np.ndarray
    stored_hw: tuple[int, int]
    orientation: int
    depth: int
    prepared: Any = None

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width) of the upright image, i.e. of the label frame."""
        return self.upright.shape[0], self.upright.shape[1]


def natural_key(path: Path) -> list:
    """Sort key: numbers in names compare as numbers (img2 before img10), case ignored."""
    return [int(part) if part.isdigit() else part.lower()
            for part in re.split(r"(\d+)", path.as_posix())]


@dataclass(frozen=True)
class ImageScan:
    """What a folder holds: images (natural order), image links whose target is missing,
    and the suffixes of files in image formats that are not supported."""

    images: list[Path]
    broken_links: list[Path]
    ignored: dict[str, int]


def scan_images(root: str | Path, recursive: bool = False) -> ImageScan:
    """Image files under ``root`` (see IMAGE_EXTENSIONS, any case), and what was left out.

    Other files (XML labels included) are never returned. Symlinked folders are not followed.
    """
    root = Path(root)
    if recursive:
        found = [Path(folder) / name for folder, _, names in os.walk(root) for name in names]
    else:
        found = [entry for entry in root.iterdir() if not entry.is_dir()]
    ours = [p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS]
    ignored: dict[str, int] = {}
    for path in found:
        if path.suffix.lower() in OTHER_IMAGE_EXTENSIONS:
            ignored[path.suffix.lower()] = ignored.get(path.suffix.lower(), 0) + 1
    order = lambda p: natural_key(p.relative_to(root))  # noqa: E731
    return ImageScan(sorted((p for p in ours if p.is_file()), key=order),
                     sorted((p for p in ours if p.is_symlink() and not p.exists()), key=order),
                     dict(sorted(ignored.items())))


def list_images(root: str | Path, recursive: bool = False) -> list[Path]:
    """The image files of :func:`scan_images`, in natural order."""
    return scan_images(root, recursive).images


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation LabelImg applies: JPEG and TIFF only (Qt's PNG and WebP readers
    ignore it)."""
    if image.format not in _ORIENTED_FORMATS:
        return 1
    try:
        value = int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except (TypeError, ValueError, SyntaxError):
        return 1
    return value if 1 <= value <= 8 else 1


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> uint8 RGB. 16-bit and 32-bit gray are scaled, not clipped."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 / 65535.0 if values.max(initial=0) > 255 else 1.0
        gray = np.clip(values * scale + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode in ("P", "PA") and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":  # converting an RGB image would copy it for nothing
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


# EXIF orientation -> the stored pixels turned upright, as PIL's transposes (and
# ImageOps.exif_transpose) turn them: 6 is PIL's ROTATE_270 (a quarter turn clockwise).
_UPRIGHT = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1],
            4: lambda a: a[::-1], 5: lambda a: a.swapaxes(0, 1),
            6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
            8: lambda a: np.rot90(a, 1)}


def _libjpeg_turbo(image: Image.Image, path: str | Path, data: bytes | None
                   ) -> np.ndarray | None:
    """The RGB pixels of a plain JPEG (Pillow mode RGB or L) from libjpeg-turbo through
    simplejpeg, or None to let Pillow decode the file.

    The same library as Pillow's wheels, so the same pixels (all 867 flames images; a
    Pillow built on IJG's libjpeg would differ in the last digits), in half the time:
    simplejpeg decodes straight into the RGB array, where Pillow decodes into its own
    4-byte pixels and packs them into an array after. It is quiet: a libjpeg warning (a
    damaged segment, a file cut short) is raised, not printed, and the file then goes to
    Pillow, which decides as it always has (it decodes a file with a few stray bytes
    silently, refuses a truncated one). CMYK JPEGs, which libjpeg-turbo would convert
    otherwise than Pillow, and multi-picture JPEGs ("MPO") stay with Pillow.
    """
    if image.format != "JPEG" or image.mode not in ("RGB", "L"):
        return None  # (Pillow has read the header only: any other file is read by Pillow)
    try:
        data = Path(path).read_bytes() if data is None else data
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
        return None
    return pixels if pixels.shape == (image.height, image.width, 3) else None


def decode_image(path: str | Path, data: bytes | None = None) -> DecodedImage:
    """Decodes an image file fully (so truncated files fail here, not later).

    Args:
        path: the file; with ``data``, only its name (a URL is kept as given).
        data: the file's bytes, when read elsewhere (e.g. through Beam's file systems).

    Raises:
        ImageError: when the file cannot be read or decoded.
    """
    path = path if data is not None and "://" in str(path) else Path(path)
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as image:
            pixels = _libjpeg_turbo(image, path, data)
            if pixels is None:
                image.load()  # Pillow turns a TIFF upright here (and drops its EXIF tag)
                pixels = _to_rgb8(image)
            orientation = _orientation(image)
            stored_hw = (image.height, image.width)
            depth = 1 if image.mode in _GRAY_MODES or image.mode.startswith("I;16") else 3
    except UnidentifiedImageError:
        raise ImageError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError(path, f"cannot decode image ({error})") from None
    pixels = _UPRIGHT[orientation](pixels)
    return DecodedImage(path, np.ascontiguousarray(pixels), stored_hw, orientation, depth)
