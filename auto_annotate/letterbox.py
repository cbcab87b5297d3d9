"""Letterboxing: an image fitted into a fixed model input the way TF Model Garden does it.

Model Garden's detection parser and its SavedModel export (``normalize_image`` then
``resize_and_crop_image`` in ``official/vision/ops/preprocess_ops.py``) scale an image by
``min(H / h, W / w)``, round the scaled size, resize bilinearly without antialiasing
(``tf.image.resize(..., antialias=False)``: half-pixel centres, each output pixel mixes the
two nearest input pixels per axis), put the result at the top-left corner and pad the rest
with zeros after subtracting the ImageNet mean: in raw pixels, with the mean colour
:data:`PAD_RGB`. A fixed-input model fed this way sees at inference what it saw in
training. This module does the same without TensorFlow: with OpenCV's bilinear resize
(``cv2.INTER_LINEAR`` on float32: half-pixel centres, no antialiasing, within 0.01 of TF's
values on 0-255; 0.3 ms for a 640x427 photo on one core) when ``opencv-python-headless`` is
installed (the ``litert`` extra), else in NumPy with TF's arithmetic exactly (3 ms).

Sizes are ``(height, width)`` in pixels. Boxes come back through one adapter,
:func:`auto_annotate.boxes.letterboxed_yxyx_to_pixel_xyxy` (:meth:`Letterbox.to_image`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auto_annotate import boxes as box_ops
from auto_annotate.opencv import opencv

__all__ = ["PAD_RGB", "Letterbox", "letterbox_image", "plan_letterbox", "resize_bilinear"]

# Model Garden's MEAN_RGB (preprocess_ops.MEAN_NORM * 255): what normalized zeros are in
# raw 0-255 pixels. A uint8 input gets it rounded: (124, 116, 104).
PAD_RGB = tuple(255 * value for value in (0.485, 0.456, 0.406))


@dataclass(frozen=True)
class Letterbox:
    """How one image was fitted into a model input.

    Attributes:
        image_hw: (height, width) of the original image.
        input_hw: (height, width) of the model input.
        scaled_hw: (height, width) of the resized image at the input's top-left corner;
            the rest of the input is padding.
    """

    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    scaled_hw: tuple[int, int]

    @property
    def scale_yx(self) -> tuple[float, float]:
        """Model Garden's ``image_scale``: scaled / original size, per axis."""
        return (self.scaled_hw[0] / self.image_hw[0], self.scaled_hw[1] / self.image_hw[1])

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """Normalized yxyx relative to the model input -> pixel xyxy in the image, clipped."""
        return box_ops.letterboxed_yxyx_to_pixel_xyxy(boxes, self.input_hw, self.scaled_hw,
                                                      self.image_hw)


def plan_letterbox(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> Letterbox:
    """The letterbox of an image, with Model Garden's arithmetic (float32, as TF does it).

    ``scale = min(H / h, W / w)``; ``scaled_hw = round(image_hw * scale)``, rounding half to
    even like ``tf.round``. A side that would round to 0 pixels (an image thousands of
    times wider than tall) is kept at 1.
    """
    image = np.asarray(image_hw, dtype=np.float32)
    target = np.asarray(input_hw, dtype=np.float32)
    if image.min() < 1 or target.min() < 1:
        raise ValueError(f"sizes must be positive: image {image_hw}, input {input_hw}")
    scale = np.minimum(target[0] / image[0], target[1] / image[1])
    scaled = np.round(image * scale)
    scaled_hw = tuple(int(min(max(size, 1), limit))
                      for size, limit in zip(scaled, input_hw, strict=True))
    return Letterbox((int(image_hw[0]), int(image_hw[1])), (int(input_hw[0]), int(input_hw[1])),
                     scaled_hw)


def _axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: lower and upper source index and the weight of the upper one.

    TF's ResizeBilinear with half-pixel centres, in float32: the source position of output
    pixel ``i`` is ``(i + 0.5) * in_size / out_size - 0.5``, clamped to the image.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    position = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale \
        - np.float32(0.5)
    floor = np.floor(position)
    lower = np.maximum(floor, 0).astype(np.intp)
    upper = np.minimum(np.ceil(position), in_size - 1).astype(np.intp)
    return lower, upper, (position - floor).astype(np.float32)


def resize_bilinear(image: np.ndarray, size_hw: tuple[int, int],
                    use_opencv: bool = True) -> np.ndarray:
    """Resizes (h, w, C) pixels to float32 (H, W, C) like ``tf.image.resize(image, size_hw,
    method="bilinear", antialias=False)``: no antialiasing, also when downscaling. With
    OpenCV (if installed and ``use_opencv``) within 0.01 of TF's values, else exactly."""
    height, width = image.shape[:2]
    if (height, width) == tuple(size_hw):
        return image.astype(np.float32)
    cv2 = opencv() if use_opencv else None
    if cv2 is not None:
        resized = cv2.resize(image.astype(np.float32), (int(size_hw[1]), int(size_hw[0])),
                             interpolation=cv2.INTER_LINEAR)
        return resized.reshape(*size_hw, *image.shape[2:])  # OpenCV drops a single channel
    top_y, bottom_y, weight_y = _axis_weights(height, size_hw[0])
    left_x, right_x, weight_x = _axis_weights(width, size_hw[1])
    # rows first, so only the rows needed are converted to float (photos are large); then
    # columns, gathered with take (faster than fancy indexing of the middle axis). TF blends
    # columns first: the results differ by float rounding only (< 1e-4 of 0-255).
    top = image[top_y].astype(np.float32)
    rows = top + (image[bottom_y].astype(np.float32) - top) * weight_y[:, None, None]
    left = np.take(rows, left_x, axis=1)
    return left + (np.take(rows, right_x, axis=1) - left) * weight_x[None, :, None]


def letterbox_image(image: np.ndarray, input_hw: tuple[int, int],
                    dtype: str = "float32", use_opencv: bool = True
                    ) -> tuple[np.ndarray, Letterbox]:
    """Fits a uint8 RGB image into a model input of ``input_hw``.

    Args:
        image: (h, w, 3) uint8 RGB.
        input_hw: (height, width) of the model input.
        dtype: "float32" (raw 0-255 values, unrounded) or "uint8" (rounded).
        use_opencv: resize with OpenCV if installed (fast, within 0.01 of TF's values);
            False: TF's arithmetic exactly (int8 calibration needs it: see
            ``tsoda.training.export_tflite``).

    Returns:
        The (H, W, 3) input array and its :class:`Letterbox`.
    """
    if dtype not in ("float32", "uint8"):
        raise ValueError(f"dtype must be float32 or uint8, got {dtype!r}")
    box = plan_letterbox(image.shape[:2], input_hw)
    (height, width), cv2 = box.scaled_hw, opencv() if use_opencv else None
    resized = resize_bilinear(image, box.scaled_hw, use_opencv)
    if cv2 is not None and resized.shape[2:] == (3,):  # padding in one pass
        result = cv2.copyMakeBorder(resized, 0, box.input_hw[0] - height, 0,
                                    box.input_hw[1] - width, cv2.BORDER_CONSTANT,
                                    value=PAD_RGB)
    else:
        result = np.full((*box.input_hw, 3), PAD_RGB, dtype=np.float32)
        result[:height, :width] = resized
    if dtype == "uint8":
        result = np.clip(np.rint(result), 0, 255).astype(np.uint8)
    return result, box
