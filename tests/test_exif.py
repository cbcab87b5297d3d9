"""EXIF orientation: boxes and size land where LabelImg shows the image.

LabelImg reads images with Qt's QImageReader and auto-transform on, so it shows the upright
image. These tests read each image the same way and check the XML against those pixels.
"""

from __future__ import annotations

import numpy as np
import pytest

from auto_annotate import voc
from auto_annotate.annotate import Options, annotate_folder
from auto_annotate.label_map import load_label_map, parse_label_map
from tests.helpers import LABEL_MAP, RED, FakeColorDetector, draw, save

QtGui = pytest.importorskip("PyQt5.QtGui", reason="PyQt5 (LabelImg's toolkit) not installed")


def labelimg_view(path) -> np.ndarray:
    """The RGB pixels LabelImg shows for an image file (its loader: QImageReader, EXIF on)."""
    reader = QtGui.QImageReader(str(path))
    reader.setAutoTransform(True)
    image = reader.read().convertToFormat(QtGui.QImage.Format_RGB888)
    assert not image.isNull(), reader.errorString()
    stride = image.bytesPerLine()
    data = np.frombuffer(image.constBits().asstring(stride * image.height()), np.uint8)
    return data.reshape(image.height(), stride)[:, : image.width() * 3].reshape(
        image.height(), image.width(), 3)


@pytest.mark.parametrize("name,orientation", [
    ("photo.jpg", 1), ("photo.jpg", 3), ("photo.jpg", 6), ("photo.jpg", 8), ("photo.jpg", 5),
    ("photo.png", 6),  # LabelImg (Qt) ignores EXIF in PNG files, and so do we
])
def test_boxes_cover_the_red_patch_as_labelimg_shows_it(tmp_path, models, name, orientation):
    stored = draw((90, 60), [(RED, (5, 10, 35, 30))])  # non-square, patch off-centre
    save(tmp_path / name, stored, orientation=orientation, quality=98)
    from auto_annotate.model import SavedModelDetector

    summary = annotate_folder(SavedModelDetector(models["dynamic"]),
                              parse_label_map(LABEL_MAP), tmp_path,
                              options=Options(progress=False))
    assert summary.annotated == 1
    shown = labelimg_view(tmp_path / name)
    annotation = voc.read_voc(tmp_path / "photo.xml")
    assert (annotation.height, annotation.width) == shown.shape[:2]
    rows, cols = np.nonzero(shown[..., 0] > 150)
    disk = voc.disk_box(annotation.objects[0].box, annotation.width, annotation.height)
    expected = (cols.min() + 1, rows.min() + 1, cols.max() + 1, rows.max() + 1)
    assert np.abs(np.subtract(disk, expected)).max() <= 1  # JPEG blurs the patch edge


def test_real_exif_photos_get_the_size_labelimg_shows(tmp_path, exif_dir):
    images = sorted(exif_dir.glob("*.jpg"))
    for image in images:  # the images only: their hand labels must not be touched
        (tmp_path / "imgs").mkdir(exist_ok=True)
        (tmp_path / "imgs" / image.name).symlink_to(image)
    summary = annotate_folder(FakeColorDetector(), load_label_map(exif_dir / "label_map.pbtxt"),
                              tmp_path / "imgs", tmp_path / "xml",
                              Options(write_empty=True, progress=False))
    assert summary.found == len(images) == 3 and summary.exit_code == 0
    for image in images:
        annotation = voc.read_voc(tmp_path / "xml" / image.with_suffix(".xml").name)
        shown = labelimg_view(image)
        assert (annotation.height, annotation.width) == shown.shape[:2]
        hand = voc.read_voc(image.with_suffix(".xml"))  # labelled upright by its authors
        assert (hand.width, hand.height) == (annotation.width, annotation.height)
