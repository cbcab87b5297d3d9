"""Letterboxing matches TF Model Garden's resize-and-pad, and boxes map back to the image."""

from __future__ import annotations

import numpy as np
import pytest

from auto_annotate import boxes as box_ops
from auto_annotate import opencv as opencv_module
from auto_annotate.letterbox import PAD_RGB, letterbox_image, plan_letterbox, resize_bilinear

INPUT_HW = (64, 96)  # a landscape model input (height 64, width 96)


@pytest.mark.parametrize("image_hw,scaled_hw", [
    ((128, 96), (64, 48)),    # portrait: height fills, padding on the right
    ((40, 240), (16, 96)),    # wide landscape: width fills, padding below
    ((32, 48), (64, 96)),     # same shape, smaller: upscaled to fill
    ((64, 96), (64, 96)),     # exactly the input size
    ((37, 91), (39, 96)),     # 91 -> 96: scale 96/91, 37 * 1.0549 = 39.03 rounds to 39
    ((3, 5000), (1, 96)),     # 3 * 0.0192 = 0.06 would round to 0: kept at 1
])
def test_scaled_size_fits_the_input_both_ways(image_hw, scaled_hw):
    box = plan_letterbox(image_hw, INPUT_HW)
    assert box.scaled_hw == scaled_hw
    assert box.input_hw == INPUT_HW and box.image_hw == image_hw


def test_scaled_size_rounds_half_to_even_like_tf_round():
    # 1 x 4 into 2 x 6: scale min(2, 1.5) = 1.5 -> (1.5, 6) -> (2, 6)
    assert plan_letterbox((1, 4), (2, 6)).scaled_hw == (2, 6)
    # 5 x 4 into 10 x 6: scale min(2, 1.5) = 1.5 -> (7.5, 6) -> 8 (half to even)
    assert plan_letterbox((5, 4), (10, 6)).scaled_hw == (8, 6)
    # 3 x 4 into 10 x 6: (4.5, 6) -> 4 (half to even, where Python's round-half-up gives 5)
    assert plan_letterbox((3, 4), (10, 6)).scaled_hw == (4, 6)


@pytest.fixture(params=["opencv", "numpy"])
def resizer(request, monkeypatch):
    """Letterboxing with OpenCV (when installed) and with the NumPy fallback."""
    if request.param == "numpy":
        monkeypatch.setattr(opencv_module, "_CV2", [None])
    elif opencv_module.opencv() is None:
        pytest.skip("opencv-python-headless is not installed")
    return request.param


@pytest.mark.parametrize("dtype,pad", [("float32", PAD_RGB), ("uint8", (124, 116, 104))])
def test_the_image_sits_top_left_and_the_rest_is_the_mean_colour(dtype, pad, resizer):
    image = np.full((128, 96, 3), 200, dtype=np.uint8)  # portrait: pad on the right
    result, _ = letterbox_image(image, INPUT_HW, dtype)
    assert result.dtype == np.dtype(dtype) and result.shape == (64, 96, 3)
    np.testing.assert_allclose(result[:, :48], 200)
    np.testing.assert_allclose(result[:, 48:], np.broadcast_to(pad, (64, 48, 3)), rtol=1e-6)
    wide, _ = letterbox_image(np.zeros((40, 240, 3), np.uint8), INPUT_HW, dtype)
    np.testing.assert_allclose(wide[:16], 0)  # landscape: pad below
    np.testing.assert_allclose(wide[16:], np.broadcast_to(pad, (48, 96, 3)), rtol=1e-6)


def test_uint8_output_rounds_the_resized_values(resizer):
    image = np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)  # 1 x 2
    result, _ = letterbox_image(image, (2, 4), "uint8")  # x2: 0, 63.75, 191.25, 255
    np.testing.assert_array_equal(result[0, :, 0], [0, 64, 191, 255])


def test_downscaling_does_not_antialias():
    # 1-pixel stripes halved: each output pixel mixes two neighbours (PIL would average 4+)
    stripes = np.zeros((4, 8, 3), dtype=np.uint8)
    stripes[:, ::4] = 255
    np.testing.assert_allclose(resize_bilinear(stripes, (2, 4))[0, :, 0],
                               [127.5, 0, 127.5, 0])


@pytest.mark.parametrize("image_hw", [(128, 96), (40, 240), (37, 91), (64, 96)])
def test_box_round_trip_through_the_model_input(image_hw):
    box = plan_letterbox(image_hw, INPUT_HW)
    height, width = image_hw
    pixels = np.array([[0, 0, width, height], [width * 0.1, height * 0.3, width * 0.6,
                                               height * 0.9]], dtype=np.float32)
    normalized = box_ops.pixel_xyxy_to_letterboxed_yxyx(pixels, INPUT_HW, box.scaled_hw,
                                                        image_hw)
    np.testing.assert_allclose(box.to_image(normalized), pixels, rtol=1e-5, atol=1e-3)


def test_boxes_come_back_in_the_image_frame_and_clipped():
    box = plan_letterbox((128, 96), INPUT_HW)  # scale 0.5, image in input x 0-48, y 0-64
    # input-normalized yxyx: y 16-32 of 64, x 12-24 of 96 -> input px (12, 16, 24, 32)
    found = box.to_image(np.array([[0.25, 0.125, 0.5, 0.25]], np.float32))
    np.testing.assert_allclose(found, [[24, 32, 48, 64]])
    # a box reaching into the padding (x up to 72 of 96) stops at the image's right edge
    np.testing.assert_allclose(box.to_image(np.array([[0, 0.25, 1, 0.75]])), [[48, 0, 96, 128]])
    assert box.scale_yx == (0.5, 0.5)


def test_sizes_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        plan_letterbox((0, 10), INPUT_HW)


IMAGE_SIZES = [(37, 91), (200, 57), (13, 7), (480, 640), (64, 96)]


@pytest.mark.parametrize("image_hw", IMAGE_SIZES)
@pytest.mark.parametrize("use_opencv,atol", [(False, 1e-4), (True, 0.01)])
def test_resize_equals_tf_image_resize_without_antialiasing(image_hw, use_opencv, atol):
    """NumPy: TF's arithmetic; OpenCV (the litert extra): within 0.01 of 0-255."""
    tf = pytest.importorskip("tensorflow")
    if use_opencv:
        pytest.importorskip("cv2", reason="the litert extra is not installed")
    image = np.random.default_rng(sum(image_hw)).integers(0, 256, (*image_hw, 3), np.uint8)
    scaled_hw = plan_letterbox(image_hw, INPUT_HW).scaled_hw
    expected = tf.image.resize(image.astype(np.float32), scaled_hw, method="bilinear",
                               antialias=False).numpy()
    resized = resize_bilinear(image, scaled_hw, use_opencv=use_opencv)
    assert resized.shape == (*scaled_hw, 3) and resized.dtype == np.float32
    np.testing.assert_allclose(resized, expected, atol=atol)


def test_a_one_pixel_wide_result_keeps_its_shape():
    image = np.full((300, 2, 3), 200, np.uint8)
    for use_opencv in (False, True):
        assert resize_bilinear(image, (150, 1), use_opencv).shape == (150, 1, 3)


@pytest.mark.parametrize("image_hw", IMAGE_SIZES)
def test_letterbox_equals_model_gardens_resize_and_crop(image_hw):
    """Model Garden normalizes, then resizes and pads with zeros; undone, that is ours."""
    tf = pytest.importorskip("tensorflow")
    ops = pytest.importorskip("official.vision.ops.preprocess_ops")
    image = np.random.default_rng(sum(image_hw)).integers(0, 256, (*image_hw, 3), np.uint8)
    normalized = ops.normalize_image(tf.constant(image, tf.float32), ops.MEAN_RGB,
                                     ops.STDDEV_RGB)
    padded, info = ops.resize_and_crop_image(normalized, list(INPUT_HW), list(INPUT_HW))
    raw = padded.numpy() * np.float32(ops.STDDEV_RGB) + np.float32(ops.MEAN_RGB)
    ours, box = letterbox_image(image, INPUT_HW)
    np.testing.assert_allclose(ours, raw, atol=0.01)  # 0.01: OpenCV's resize, if installed
    np.testing.assert_allclose(box.scale_yx, info.numpy()[2], rtol=1e-6)
