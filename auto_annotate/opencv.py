"""OpenCV when it is installed (``opencv-python-headless``, part of the ``litert`` extra).

It is only ever a faster way to the same result: the bilinear resize of letterboxing
(within 0.01 of TensorFlow's values; :mod:`auto_annotate.letterbox`). Without it, the NumPy
path runs. OpenCV does not decode images: its JPEG decoder gives the same pixels as
Pillow 1.5x faster, but its libjpeg prints warnings ("Corrupt JPEG data: 16 extraneous
bytes before marker 0xd9") straight to the console for files Pillow decodes silently, and
nothing in OpenCV turns them off (:mod:`auto_annotate.images` uses libjpeg-turbo through
simplejpeg, which raises them instead).
"""

from __future__ import annotations

__all__ = ["opencv"]

_CV2: list = []  # [the cv2 module or None], filled on first use


def opencv():
    """The ``cv2`` module, or None when OpenCV is not installed. OpenCV's own thread pool
    is set to one thread: images are resized one per decoding thread, and the model has
    the cores."""
    if not _CV2:
        try:
            import cv2

            cv2.setNumThreads(1)
            _CV2.append(cv2)
        except ImportError:
            _CV2.append(None)
    return _CV2[0]
