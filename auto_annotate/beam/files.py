"""Files for the Beam pipeline: local paths exactly as the local run handles them, URLs
(``gs://``, ``s3://``, ``hdfs://``...) through Beam's file systems.

Local paths keep the local run's behaviour byte for byte (its image scan, its atomic
write with fsync and the usual permissions), so both runs write the same labels.
"""

from __future__ import annotations

import contextlib
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from auto_annotate.errors import ImageError, LabelMapError, VocError
from auto_annotate.fileio import atomic_write_bytes
from auto_annotate.images import IMAGE_EXTENSIONS, OTHER_IMAGE_EXTENSIONS, scan_images
from auto_annotate.label_map import LabelMap, load_label_map, parse_label_map
from auto_annotate.labelling import read_label_file
from auto_annotate.voc import label_name, label_path

__all__ = ["Listing", "is_url", "list_folder", "load_label_map_anywhere", "local_copy", "localize",
           "read_bytes", "read_image", "read_label", "relative", "remove_folder", "write_atomic",
           "xml_path_of"]

RAW = CompressionTypes.UNCOMPRESSED  # never guess a compression from a file's suffix


def is_url(path: str | Path) -> bool:
    """True for a URL with a scheme (``gs://bucket/x``), False for a local path."""
    return "://" in str(path)


@dataclass
class Listing:
    """What an image folder holds: image paths, links whose target is missing, and the
    count of files per unsupported image suffix."""

    images: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)


def list_folder(root: str, recursive: bool) -> Listing:
    """The images of a folder: the local run's scan for a local path, Beam's match
    (``root/*``, or ``root/**`` with ``recursive``) for a URL."""
    if not is_url(root):
        scan = scan_images(root, recursive)
        return Listing([str(p) for p in scan.images], [str(p) for p in scan.broken_links],
                       scan.ignored)
    pattern = root.rstrip("/") + ("/**" if recursive else "/*")
    listing = Listing()
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        suffix = posixpath.splitext(metadata.path)[1].lower()
        if suffix in IMAGE_EXTENSIONS:
            listing.images.append(metadata.path)
        elif suffix in OTHER_IMAGE_EXTENSIONS:
            listing.ignored[suffix] = listing.ignored.get(suffix, 0) + 1
    listing.images.sort()
    return listing


def relative(path: str, root: str) -> str:
    """``path`` relative to the folder ``root``, with forward slashes."""
    if not is_url(path):
        return Path(path).relative_to(root).as_posix()
    return path[len(root.rstrip("/")) + 1:]


def xml_path_of(xml_root: str, rel: str) -> str:
    """The label file of an image: its sub-folder mirrored under ``xml_root``, its stem."""
    if not is_url(xml_root):
        return str(label_path(rel, xml_root))
    folder, name = posixpath.split(rel)
    stem = label_name(name)
    return posixpath.join(xml_root.rstrip("/"), folder, stem) if folder else \
        posixpath.join(xml_root.rstrip("/"), stem)


def read_bytes(path: str) -> bytes:
    """A file's bytes (local or URL); OSError when it cannot be read."""
    if not is_url(path):
        return Path(path).read_bytes()
    try:
        with FileSystems.open(path, compression_type=RAW) as stream:
            return stream.read()
    except Exception as error:  # Beam's file systems raise their own error types
        raise OSError(f"cannot read {path} ({error})") from None


def read_label(path: str) -> bytes | None:
    """A label file's bytes, None when it does not exist; VocError when unreadable."""
    if not is_url(path):
        return read_label_file(path)
    if not FileSystems.exists(path):
        return None
    try:
        return read_bytes(path)
    except OSError as error:
        raise VocError(path, f"cannot read existing XML ({error})") from None


def read_image(path: str) -> bytes | None:
    """An image's bytes for a URL (None for a local path: the decoder opens it itself)."""
    if not is_url(path):
        return None
    try:
        return read_bytes(path)
    except OSError as error:
        raise ImageError(path, str(error)) from None


def write_atomic(path: str, data: bytes) -> None:
    """Writes a file whole or not at all: the local run's atomic write for a local path;
    for a URL, a temporary object beside it, then a rename (an object store shows an
    object only once it is complete)."""
    if not is_url(path):
        atomic_write_bytes(path, data)
        return
    folder, name = posixpath.split(path)
    temp = posixpath.join(folder, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    with FileSystems.create(temp, compression_type=RAW) as stream:
        stream.write(data)
    try:
        FileSystems.rename([temp], [path])
    except Exception:
        FileSystems.delete([temp])
        raise


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """:func:`localize` for the duration of a block; the copy is removed after it."""
    local = localize(path)
    try:
        yield local
    finally:
        if local != path:
            shutil.rmtree(Path(local) if Path(local).is_dir() else Path(local).parent,
                          ignore_errors=True)


def localize(path: str) -> str:
    """A local copy of a model at a URL (a SavedModel folder or a ``.tflite`` file), in a
    new temporary folder the caller removes; a local path is returned as it is."""
    if not is_url(path):
        return path
    target = Path(tempfile.mkdtemp(prefix="auto_annotate_model_"))
    root = path.rstrip("/")
    single = root.lower().endswith(".tflite")
    files = [root] if single else \
        [m.path for m in FileSystems.match([root + "/**"])[0].metadata_list]
    base = posixpath.dirname(root) if single else root
    for source in files:
        local = target / posixpath.relpath(source, base)
        local.parent.mkdir(parents=True, exist_ok=True)
        with FileSystems.open(source, compression_type=RAW) as stream, \
                local.open("wb") as out:
            shutil.copyfileobj(stream, out)
    return str(target / posixpath.basename(root)) if single else str(target)


def load_label_map_anywhere(path: str) -> LabelMap:
    """A label map from a local path or a URL; LabelMapError when it cannot be used."""
    if not is_url(path):
        return load_label_map(path)
    try:
        return parse_label_map(read_bytes(path).decode("utf-8"), path)
    except (OSError, UnicodeDecodeError) as error:
        raise LabelMapError(path, f"cannot read label map ({error})") from None


def remove_folder(folder: str) -> None:
    """Deletes a folder and what it holds (an object store's "folder": every object
    under it); missing is fine."""
    if not is_url(folder):
        shutil.rmtree(folder, ignore_errors=True)
        return
    found = FileSystems.match([folder.rstrip("/") + "/**"])[0].metadata_list
    if found:
        FileSystems.delete([m.path for m in found])
    with contextlib.suppress(Exception):  # a file system without folders has none left
        FileSystems.delete([folder.rstrip("/") + "/"])
