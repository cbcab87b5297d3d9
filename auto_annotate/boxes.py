"""Box conversions between conventions; each conversion lives here, once.

Conventions:
    * pixel xyxy: absolute ``xmin, ymin, xmax, ymax``, 0-based continuous coordinates.
    * normalized yxyx: ``ymin, xmin, ymax, xmax`` divided by the image height/width
      (what Object Detection API SavedModels return).
    * letterboxed normalized yxyx: normalized yxyx relative to a fixed model input that
      holds the image scaled to ``scaled_hw`` at its top-left corner, the rest padding
      (auto_annotate/letterbox.py).
    * ``image_hw`` is always ``(height, width)``.
    * EXIF orientation: the values 1-8 of tag 0x0112. The *stored* frame is the pixels as
      saved in the file; the *upright* frame is the image after applying the orientation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["clip_xyxy", "iou_xyxy", "letterboxed_yxyx_to_pixel_xyxy",
           "normalized_yxyx_to_pixel_xyxy", "pixel_xyxy_to_letterboxed_yxyx",
           "pixel_xyxy_to_normalized_yxyx", "stored_to_upright", "upright_hw", "upright_to_stored"]

# Each orientation as an affine map from stored (x, y) to upright (x', y'):
# x' = a*x + b*y + c*W + d*H ; y' = e*x + f*y + g*W + h*H, for stored size (W, H).
# These match PIL's ImageOps.exif_transpose, which the tests check pixel by pixel.
_STORED_TO_UPRIGHT = {
    1: ((1, 0, 0, 0), (0, 1, 0, 0)),
    2: ((-1, 0, 1, 0), (0, 1, 0, 0)),     # mirror left-right
    3: ((-1, 0, 1, 0), (0, -1, 0, 1)),    # rotate 180
    4: ((1, 0, 0, 0), (0, -1, 0, 1)),     # mirror top-bottom
    5: ((0, 1, 0, 0), (1, 0, 0, 0)),      # transpose
    6: ((0, -1, 0, 1), (1, 0, 0, 0)),     # rotate 90 clockwise
    7: ((0, -1, 0, 1), (-1, 0, 1, 0)),    # transverse
    8: ((0, 1, 0, 0), (-1, 0, 1, 0)),     # rotate 90 counter-clockwise
}


def normalized_yxyx_to_pixel_xyxy(boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Converts normalized ``ymin, xmin, ymax, xmax`` to pixel ``xmin, ymin, xmax, ymax``.

    Args:
        boxes: (N, 4) normalized yxyx.
        image_hw: (height, width) of the image the boxes are normalized to.

    Returns:
        A new float32 (N, 4) array of pixel xyxy; the corners are put in order.
    """
    height, width = image_hw
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    xs = boxes[:, [1, 3]] * np.float32(width)
    ys = boxes[:, [0, 2]] * np.float32(height)
    return np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)


def pixel_xyxy_to_normalized_yxyx(boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`normalized_yxyx_to_pixel_xyxy`."""
    height, width = image_hw
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.stack([boxes[:, 1] / height, boxes[:, 0] / width,
                     boxes[:, 3] / height, boxes[:, 2] / width], axis=1).astype(np.float32)


def letterboxed_yxyx_to_pixel_xyxy(boxes: np.ndarray, input_hw: tuple[int, int],
                                   scaled_hw: tuple[int, int],
                                   image_hw: tuple[int, int]) -> np.ndarray:
    """Converts letterboxed normalized yxyx to pixel xyxy of the original image, clipped.

    The boxes are put in the model input's pixels, divided by the per-axis scale
    ``scaled_hw / image_hw`` (Model Garden's ``image_scale``, which its own export divides
    by), and clipped to the image: a box reaching into the padding ends at the image edge.

    Args:
        boxes: (N, 4) normalized yxyx relative to the whole model input.
        input_hw: (height, width) of the model input.
        scaled_hw: (height, width) the image was resized to inside the input.
        image_hw: (height, width) of the original image.

    Returns:
        A new float32 (N, 4) array of pixel xyxy in the original image.
    """
    (scaled_h, scaled_w), (height, width) = scaled_hw, image_hw
    pixels = normalized_yxyx_to_pixel_xyxy(boxes, input_hw).astype(np.float64)
    pixels *= [width / scaled_w, height / scaled_h, width / scaled_w, height / scaled_h]
    return clip_xyxy(pixels, image_hw)


def pixel_xyxy_to_letterboxed_yxyx(boxes: np.ndarray, input_hw: tuple[int, int],
                                   scaled_hw: tuple[int, int],
                                   image_hw: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`letterboxed_yxyx_to_pixel_xyxy` for boxes inside the image."""
    (scaled_h, scaled_w), (height, width) = scaled_hw, image_hw
    pixels = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    pixels = pixels * [scaled_w / width, scaled_h / height, scaled_w / width, scaled_h / height]
    return pixel_xyxy_to_normalized_yxyx(pixels, input_hw)


def clip_xyxy(boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Clips pixel xyxy boxes to ``[0, width] x [0, height]``; returns a new array."""
    height, width = image_hw
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes


def upright_hw(stored_hw: tuple[int, int], orientation: int) -> tuple[int, int]:
    """(height, width) of the upright image for a stored size and EXIF orientation."""
    height, width = stored_hw
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def _affine(orientation: int, stored_hw: tuple[int, int]) -> np.ndarray:
    if orientation not in _STORED_TO_UPRIGHT:
        raise ValueError(f"EXIF orientation must be 1-8, got {orientation}")
    height, width = stored_hw
    rows = []
    for a, b, c, d in _STORED_TO_UPRIGHT[orientation]:
        rows.append([a, b, c * width + d * height])
    return np.array([*rows, [0, 0, 1]], dtype=np.float64)


def _map_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 3]]], axis=1)  # (N, 2, 2) xy
    mapped = corners @ matrix[:2, :2].T + matrix[:2, 2]
    lo, hi = mapped.min(axis=1), mapped.max(axis=1)
    return np.concatenate([lo, hi], axis=1).astype(np.float32)


def stored_to_upright(boxes: np.ndarray, stored_hw: tuple[int, int],
                      orientation: int) -> np.ndarray:
    """Maps pixel xyxy boxes from the stored frame to the upright frame."""
    return _map_boxes(boxes, _affine(orientation, stored_hw))


def upright_to_stored(boxes: np.ndarray, stored_hw: tuple[int, int],
                      orientation: int) -> np.ndarray:
    """Maps pixel xyxy boxes from the upright frame back to the stored frame.

    Args:
        boxes: (N, 4) pixel xyxy in the upright frame.
        stored_hw: (height, width) of the stored pixels (not of the upright image).
        orientation: EXIF orientation 1-8.
    """
    return _map_boxes(boxes, np.linalg.inv(_affine(orientation, stored_hw)))


def iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of pixel xyxy boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
