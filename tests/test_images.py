"""Finding images and decoding every common mode to upright RGB."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from auto_annotate.errors import ImageError
from auto_annotate.images import decode_image, list_images
from tests.helpers import RED, draw, save


def test_list_images_is_case_insensitive_and_skips_other_files(tmp_path):
    for name in ["b10.JPG", "b2.jpeg", "c.PNG", "d.bmp", "a.xml", "notes.txt", "e.gif"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.jpg").write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()  # a folder with an image-like name
    assert [p.name for p in list_images(tmp_path)] == ["b2.jpeg", "b10.JPG", "c.PNG", "d.bmp"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] \
        == ["b2.jpeg", "b10.JPG", "c.PNG", "d.bmp", "sub/f.jpg"]


PIXELS = draw((48, 32), [(RED, (4, 6, 20, 18))])


@pytest.mark.parametrize("name,mode,depth", [
    ("rgb.png", None, 3), ("gray.png", "L", 1), ("rgba.png", "RGBA", 3),
    ("palette.png", "P", 3), ("bilevel.png", "1", 1), ("rgb.bmp", None, 3),
    ("cmyk.jpg", "CMYK", 3), ("gray.jpg", "L", 1),
])
def test_modes_decode_to_rgb_uint8(tmp_path, name, mode, depth):
    path = save(tmp_path / name, PIXELS, mode=mode)
    image = decode_image(path)
    assert image.upright.shape == (32, 48, 3) and image.upright.dtype == np.uint8
    assert image.depth == depth and image.stored_hw == (32, 48) and image.orientation == 1
    if mode in (None, "RGBA", "P", "CMYK"):  # colour survives
        assert image.upright[10, 10, 0] > 150 and image.upright[10, 10, 2] < 100


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 32 * 48).astype(np.uint16).reshape(32, 48)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    image = decode_image(path)
    assert image.depth == 1
    gray = image.upright[..., 0].astype(int)
    np.testing.assert_allclose(gray, np.round(values / 257.0), atol=1)


def test_palette_with_transparency(tmp_path):
    image = Image.fromarray(PIXELS).convert("P")
    image.info["transparency"] = 0
    image.save(tmp_path / "t.png", transparency=0)
    assert decode_image(tmp_path / "t.png").upright.shape == (32, 48, 3)


def test_exif_orientation_is_applied(tmp_path):
    path = save(tmp_path / "rot.jpg", PIXELS, orientation=6, quality=98)
    image = decode_image(path)
    assert image.orientation == 6 and image.stored_hw == (32, 48)
    assert image.upright.shape == (48, 32, 3) and image.hw == (48, 32)


@pytest.mark.parametrize("content,problem", [
    (b"", "not a readable image"),
    (b"this is not an image", "not a readable image"),
])
def test_unreadable_files_raise_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=problem) as error:
        decode_image(path)
    assert str(path) in str(error.value)


def test_truncated_jpeg_is_an_error(tmp_path):
    path = save(tmp_path / "full.jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3),
                                                                         dtype=np.uint8))
    data = path.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cannot decode"):
        decode_image(cut)


@pytest.mark.parametrize(("suffix", "applied"), [("tif", True), ("webp", False)])
def test_exif_orientation_is_applied_to_tiff_not_webp_as_qt_does(tmp_path, suffix, applied):
    path = save(tmp_path / f"a.{suffix}", draw((60, 30)), orientation=6)
    assert decode_image(path).hw == ((60, 30) if applied else (30, 60))  # what Qt shows
