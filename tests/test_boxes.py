"""Box adapters: normalized <-> pixel on non-square images, and EXIF orientation maps."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from auto_annotate import boxes as box_ops
from auto_annotate.detections import Detections


def test_normalized_yxyx_to_pixel_xyxy_on_a_non_square_image():
    normalized = np.array([[0.1, 0.2, 0.5, 0.9]], dtype=np.float32)  # ymin xmin ymax xmax
    pixel = box_ops.normalized_yxyx_to_pixel_xyxy(normalized, image_hw=(200, 300))
    np.testing.assert_allclose(pixel, [[60, 20, 270, 100]], atol=1e-4)  # xmin ymin xmax ymax
    back = box_ops.pixel_xyxy_to_normalized_yxyx(pixel, image_hw=(200, 300))
    np.testing.assert_allclose(back, normalized, atol=1e-6)


def test_swapped_corners_are_put_in_order():
    pixel = box_ops.normalized_yxyx_to_pixel_xyxy([[0.5, 0.9, 0.1, 0.2]], (200, 300))
    np.testing.assert_allclose(pixel, [[60, 20, 270, 100]], atol=1e-4)


def test_clip_does_not_touch_its_input():
    boxes = np.array([[-5, -2, 310, 250]], dtype=np.float32)
    clipped = box_ops.clip_xyxy(boxes, (200, 300))
    np.testing.assert_array_equal(clipped, [[0, 0, 300, 200]])
    np.testing.assert_array_equal(boxes, [[-5, -2, 310, 250]])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_maps_match_pil_exif_transpose(orientation):
    stored_hw = (40, 70)
    box = np.array([[5, 3, 21, 11]], dtype=np.float32)  # xmin ymin xmax ymax, stored frame
    stored = np.zeros(stored_hw, dtype=np.uint8)
    stored[3:11, 5:21] = 255
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    upright = np.asarray(ImageOps.exif_transpose(image))
    assert upright.shape == box_ops.upright_hw(stored_hw, orientation)
    rows, cols = np.nonzero(upright)
    expected = [[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]]
    np.testing.assert_allclose(box_ops.stored_to_upright(box, stored_hw, orientation), expected)
    np.testing.assert_allclose(
        box_ops.upright_to_stored(np.array(expected), stored_hw, orientation), box, atol=1e-5)


def test_invalid_orientation_is_refused():
    with pytest.raises(ValueError, match="orientation"):
        box_ops.upright_to_stored(np.zeros((1, 4)), (10, 20), 9)


def test_detections_check_shapes_and_are_read_only():
    with pytest.raises(ValueError, match="equal in number"):
        Detections(np.zeros((2, 4)), np.zeros(1), np.zeros(2))
    detections = Detections(np.zeros((1, 4)), [0.5], [1])
    with pytest.raises(ValueError):
        detections.boxes[0, 0] = 3
    assert len(Detections.empty()) == 0


@pytest.mark.parametrize("score,threshold,kept", [
    (0.7, 0.7, True), (0.3, 0.3, True), (0.8, 0.8, True), (0.69999, 0.7, False),
    (0.0, 0.0, True), (1.0, 1.0, True),
])
def test_threshold_keeps_scores_at_or_above_it_in_float32(score, threshold, kept):
    detections = Detections(np.zeros((1, 4)), np.float32([score]), [1])
    assert len(detections.at_or_above(threshold)) == int(kept)
