"""auto_annotate: a detection model labels a folder of images as Pascal VOC XML.

The inference side of the project. The model is a TF2 SavedModel (run with TensorFlow) or
a ``.tflite`` file (run with LiteRT, the ``litert`` extra). It depends on tensorflow, lxml,
tqdm and Pillow only, and imports TensorFlow lazily: only when a SavedModel is loaded, so
labelling with a ``.tflite`` model never imports it. ``auto_annotate.beam`` runs the same
labelling as an Apache Beam pipeline (the optional ``beam`` extra). ``predict_stream`` is
the run's model stage on its own (decode ahead, batch, detect, per-image failures), for
other code that runs a detector over images (``tsoda evaluate``).
"""

from auto_annotate.annotate import Options, annotate_folder
from auto_annotate.api import AutoAnnotate
from auto_annotate.detections import Detections
from auto_annotate.errors import AnnotateError, ImageError, LabelMapError, ModelError, VocError
from auto_annotate.label_map import LabelMap, load_label_map
from auto_annotate.model import Detector, load_detector
from auto_annotate.predict import FailedImage, Prediction, predict_stream
from auto_annotate.summary import Summary

__all__ = ["AnnotateError", "AutoAnnotate", "Detections", "Detector", "FailedImage",
           "ImageError", "LabelMap", "LabelMapError", "ModelError", "Options", "Prediction",
           "Summary", "VocError", "annotate_folder", "load_detector", "load_label_map",
           "predict_stream"]
