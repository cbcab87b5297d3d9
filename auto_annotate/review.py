"""``python -m auto_annotate.review``: open LabelImg on images, their XML and the classes.

LabelImg's own command line is ``labelImg IMAGE_DIR CLASS_FILE SAVE_DIR``; this builds it
from the folders auto_annotate used, writes ``predefined_classes.txt`` from the label map
when one is given, and starts LabelImg in this Python. With ``--queue`` (a TSODA
``review_queue.csv``), LabelImg shows the queued images in queue order (its own order is by
file name), so "review these first" can be followed with ``D``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from auto_annotate import labelimg_compat
from auto_annotate.annotate import PREDEFINED_CLASSES, write_predefined_classes
from auto_annotate.console import run_command
from auto_annotate.errors import AnnotateError
from auto_annotate.label_map import load_label_map

__all__ = ["labelimg_argv", "launch", "main", "prepare", "read_queue", "start"]


def labelimg_argv(imgs_path: Path, xml_path: Path, classes_path: Path) -> list[str]:
    """The argv LabelImg's ``main`` expects: program, image folder, class file, save folder."""
    return ["labelImg", str(imgs_path), str(classes_path), str(xml_path)]


def prepare(imgs_path: str | Path, xml_path: str | Path | None = None,
            label_map_path: str | Path | None = None) -> list[str]:
    """Checks the folders, writes the class list if a label map is given, returns the argv.

    Raises:
        AnnotateError: a missing image folder, or no class list and no label map.
    """
    imgs = Path(imgs_path)
    xml = Path(xml_path) if xml_path is not None else imgs
    if not imgs.is_dir():
        raise AnnotateError(imgs, "image folder does not exist")
    xml.mkdir(parents=True, exist_ok=True)
    if label_map_path is not None:
        classes = write_predefined_classes(xml, load_label_map(label_map_path))
    else:
        classes = xml / PREDEFINED_CLASSES
        if not classes.is_file():
            raise AnnotateError(classes, "no class list here; pass --label_map_path")
    return labelimg_argv(imgs.resolve(), xml.resolve(), classes.resolve())


def read_queue(path: str | Path) -> tuple[list[Path], Path]:
    """The queued images in order (each once, missing files left out) and their XML folder.

    Raises:
        AnnotateError: the file is missing, is not a review queue, or lists no existing image.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as stream:
            rows = list(csv.DictReader(stream))
    except OSError as error:
        raise AnnotateError(path, f"cannot read the review queue: {error.strerror}") from None
    if rows and not {"path", "xml"} <= set(rows[0]):
        raise AnnotateError(path, "not a review queue: needs 'path' and 'xml' columns")
    images = list(dict.fromkeys(Path(row["path"]) for row in rows if Path(row["path"]).is_file()))
    if not images:
        raise AnnotateError(path, "the review queue lists no existing image")
    missing = len({row["path"] for row in rows}) - len(images)
    if missing:
        print(f"note: {missing} queued images no longer exist; left out", file=sys.stderr)
    return images, Path(next(row["xml"] for row in rows if Path(row["path"]) == images[0])).parent


def start(argv: list[str], order: list[Path] | None = None):
    """Builds LabelImg's application and main window, with the compatibility layer in place.

    Args:
        argv: LabelImg's argv (see :func:`prepare`).
        order: images to show, in this order, instead of LabelImg's scan of the folder.

    Returns:
        (QApplication, LabelImg MainWindow), not yet running its event loop.
    """
    try:
        from labelImg.labelImg import get_main_app
    except ImportError:
        raise AnnotateError(None, "LabelImg is not installed: pip install "
                                  "'auto-annotate-tsoda[review]'") from None
    labelimg_compat.install()
    app, window = get_main_app(argv)
    if order is not None:  # LabelImg opens its folder after the event loop starts
        ordered = [str(Path(p).resolve()) for p in order]
        window.scan_all_images = lambda _folder: list(ordered)
    return app, window


def launch(argv: list[str], order: list[Path] | None = None) -> int:
    """Starts LabelImg with ``argv`` and returns its exit status when the window closes."""
    app, _window = start(argv, order)
    return app.exec_()


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m auto_annotate.review",
        description="Review labels in LabelImg: W draws a box, D/A next/previous image, "
                    "Space marks the image verified, Ctrl+S saves.")
    parser.add_argument("--imgs_path", help="folder of images (needed without --queue)")
    parser.add_argument("--xml_path", help="folder of the XML (default: the image folder, "
                                           "or the queue's)")
    parser.add_argument("--label_map_path", help="label_map.pbtxt, to write the class list")
    parser.add_argument("--queue", help="a TSODA review_queue.csv: its images, in its order")
    parsed = parser.parse_args(args)
    if parsed.imgs_path is None and parsed.queue is None:
        parser.error("give --imgs_path or --queue")
    return run_command(lambda: _review(parsed))


def _review(parsed) -> int:
    order = None
    imgs, xml = parsed.imgs_path, parsed.xml_path
    if parsed.queue is not None:
        order, queue_xml = read_queue(parsed.queue)
        imgs, xml = imgs or order[0].parent, xml or queue_xml
    return launch(prepare(imgs, xml, parsed.label_map_path), order)


if __name__ == "__main__":
    sys.exit(main())
