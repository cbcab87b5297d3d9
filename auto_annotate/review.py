"""``python -m auto_annotate.review``: open LabelImg on images, their XML and the classes.

LabelImg's own command line is ``labelImg IMAGE_DIR CLASS_FILE SAVE_DIR``; this builds it
from the folders auto_annotate used, writes ``predefined_classes.txt`` from the label map
when one is given, and starts LabelImg in this Python.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from auto_annotate import labelimg_compat
from auto_annotate.annotate import PREDEFINED_CLASSES, write_predefined_classes
from auto_annotate.errors import AnnotateError
from auto_annotate.label_map import load_label_map


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


def start(argv: list[str]):
    """Builds LabelImg's application and main window, with the compatibility layer in place.

    Returns:
        (QApplication, LabelImg MainWindow), not yet running its event loop.
    """
    try:
        from labelImg.labelImg import get_main_app
    except ImportError:
        raise AnnotateError(None, "LabelImg is not installed: pip install "
                                  "'auto-annotate-tsoda[review]'") from None
    labelimg_compat.install()
    return get_main_app(argv)


def launch(argv: list[str]) -> int:
    """Starts LabelImg with ``argv`` and returns its exit status when the window closes."""
    app, _window = start(argv)
    return app.exec_()


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m auto_annotate.review",
        description="Review labels in LabelImg: W draws a box, D/A next/previous image, "
                    "Space marks the image verified, Ctrl+S saves.")
    parser.add_argument("--imgs_path", required=True, help="folder of images")
    parser.add_argument("--xml_path", help="folder of the XML (default: the image folder)")
    parser.add_argument("--label_map_path", help="label_map.pbtxt, to write the class list")
    parsed = parser.parse_args(args)
    try:
        argv = prepare(parsed.imgs_path, parsed.xml_path, parsed.label_map_path)
        return launch(argv)
    except AnnotateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
