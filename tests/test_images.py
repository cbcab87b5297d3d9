"""Finding images and decoding every common mode to upright RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from PIL import Image, ImageOps

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


def _pillow_upright(path) -> np.ndarray:
    """What PIL alone makes of a file: EXIF-transposed RGB (the reference for the decoder)."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


@pytest.fixture
def turbo_calls(monkeypatch):
    """Counts the JPEGs libjpeg-turbo (simplejpeg) decoded, so a test knows which path ran."""
    calls = []
    real = simplejpeg.decode_jpeg

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)
    monkeypatch.setattr(simplejpeg, "decode_jpeg", counted)
    return calls


NOISE = np.random.default_rng(3).integers(0, 255, (45, 70, 3), dtype=np.uint8)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("params", [
    {"quality": 90}, {"subsampling": 1}, {"subsampling": 0, "quality": 97},
    {"progressive": True}, {"mode": "L"}, {"keep_rgb": True},
], ids=["420", "422", "444", "progressive", "gray", "rgb-coded"])
def test_plain_jpegs_decode_to_pillows_pixels_through_libjpeg_turbo(tmp_path, turbo_calls,
                                                                    params, orientation):
    path = save(tmp_path / "a.jpg", NOISE, orientation=orientation, **params)
    if "keep_rgb" in params:  # the file really is coded in RGB (an Adobe marker, no YCbCr)
        assert Image.open(path).info.get("adobe_transform") == 0
    image = decode_image(path)
    assert len(turbo_calls) == 1  # the fast path ran ...
    np.testing.assert_array_equal(image.upright, _pillow_upright(path))  # ... to PIL's pixels
    assert image.upright.flags.c_contiguous and image.orientation == orientation
    assert image.stored_hw == (45, 70) and image.depth == (1 if "mode" in params else 3)


def test_cmyk_jpeg_is_left_to_pillow(tmp_path, turbo_calls):
    path = save(tmp_path / "cmyk.jpg", NOISE, mode="CMYK")
    np.testing.assert_array_equal(decode_image(path).upright, _pillow_upright(path))
    assert turbo_calls == []  # libjpeg-turbo would convert CMYK otherwise than Pillow


def test_damaged_jpegs_are_decided_by_pillow_and_nothing_is_printed(tmp_path, capfd,
                                                                    turbo_calls):
    data = save(tmp_path / "full.jpg", NOISE).read_bytes()
    assert data.endswith(b"\xff\xd9")
    stray = tmp_path / "stray.jpg"  # what some cameras write: zero bytes before the end
    stray.write_bytes(data[:-2] + bytes(16) + data[-2:])
    np.testing.assert_array_equal(decode_image(stray).upright, _pillow_upright(stray))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cannot decode"):
        decode_image(cut)
    assert len(turbo_calls) == 2  # libjpeg-turbo saw both and gave them back to Pillow
    assert capfd.readouterr() == ("", "")  # libjpeg's warnings reach no console


def test_missing_file_and_bytes_given(tmp_path):
    with pytest.raises(ImageError, match=r"cannot decode image .*No such file") as error:
        decode_image(tmp_path / "gone.jpg")
    assert "gone.jpg" in str(error.value)
    path = save(tmp_path / "a.jpg", NOISE, orientation=6)
    from_bytes = decode_image("gs://bucket/a.jpg", data=path.read_bytes())
    assert from_bytes.path == "gs://bucket/a.jpg" and from_bytes.hw == (70, 45)
    np.testing.assert_array_equal(from_bytes.upright, _pillow_upright(path))


def test_a_multi_picture_jpeg_is_turned_upright_like_any_jpeg(tmp_path):
    """Cameras and phones write several pictures in one JPEG (Pillow: "MPO"); Qt shows the
    first one turned by its EXIF orientation, so the label frame is that."""
    path = tmp_path / "mpo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(NOISE).save(path, "MPO", save_all=True, exif=exif.tobytes(),
                                append_images=[Image.fromarray(NOISE[::-1])])
    assert Image.open(path).format == "MPO"
    image = decode_image(path)
    assert image.orientation == 6 and image.hw == (70, 45)
    np.testing.assert_array_equal(image.upright, _pillow_upright(path))


def test_only_a_plain_jpeg_is_read_whole_before_decoding(tmp_path, monkeypatch):
    """Pillow reads other files itself (a huge TIFF is refused from its header, not read
    into memory first)."""
    paths = [save(tmp_path / "a.png", NOISE), save(tmp_path / "a.tif", NOISE),
             save(tmp_path / "cmyk.jpg", NOISE, mode="CMYK")]

    def refuse(self):
        raise AssertionError(f"{self.name} read whole")
    monkeypatch.setattr(Path, "read_bytes", refuse)
    for path in paths:
        assert decode_image(path).hw == (45, 70)
