"""OpenCV when it is installed (``opencv-python-headless``, part of the ``litert`` extra).

It is only ever a faster way to the same result: JPEG decoding (the same libjpeg-turbo
arithmetic as Pillow, pixel for pixel; :mod:`auto_annotate.images`) and the bilinear resize
of letterboxing (within 0.01 of TensorFlow's values; :mod:`auto_annotate.letterbox`).
Without it, the Pillow and NumPy paths run.
"""

from __future__ import annotations

__all__ = ["opencv"]

_CV2: list = []  # [the cv2 module or None], filled on first use


def opencv():
    """The ``cv2`` module, or None when OpenCV is not installed. OpenCV's own thread pool
    is set to one thread: images are decoded and resized one per decoding thread, and the
    model has the cores."""
    if not _CV2:
        try:
            import cv2

            cv2.setNumThreads(1)
            _CV2.append(cv2)
        except ImportError:
            _CV2.append(None)
    return _CV2[0]
