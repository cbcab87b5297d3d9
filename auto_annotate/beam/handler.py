"""Our detectors as a Beam ``ModelHandler``, for ``RunInference``.

Beam's ``TFModelHandlerTensor`` cannot serve our models: it loads through Keras'
``load_model`` (not an Object Detection API SavedModel, nor a ``.tflite`` file). This
handler builds the detector the local run uses, :func:`auto_annotate.load_detector`, once
per worker process (RunInference shares it between the worker's threads), and runs each
batch with the local run's :func:`auto_annotate.predict.predict_batch`: a batch the model
fails on fails its images only, and non-finite output fails its image.
"""

from __future__ import annotations

import atexit
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from auto_annotate.beam.files import localize
from auto_annotate.model import Detector, load_detector
from auto_annotate.predict import predict_batch

__all__ = ["DetectorHandler"]


class DetectorHandler(ModelHandler):
    """Examples are (task, DecodedImage); each PredictionResult's ``inference`` is the
    local run's outcome: a :class:`auto_annotate.predict.Prediction` (Detections in the
    label frame) or a :class:`auto_annotate.predict.FailedImage`.

    Args:
        model_path: a SavedModel folder or a ``.tflite`` file, local or at a URL (copied
            to the worker first).
        batch_size: images per model call (at most), as ``--batch_size``.
        tta: test-time augmentation views, as ``--tta``.
    """

    def __init__(self, model_path: str, batch_size: int = 1,
                 tta: tuple[str, ...] = ()) -> None:
        super().__init__(min_batch_size=1, max_batch_size=batch_size)
        self.model_path, self.batch_size, self.tta = model_path, batch_size, tuple(tta)

    def load_model(self) -> Detector:
        local = localize(self.model_path)
        if local != self.model_path:  # a copy of a model at a URL: removed when the worker ends
            folder = Path(local) if Path(local).is_dir() else Path(local).parent
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
        detector = load_detector(local, self.batch_size)
        if self.tta:
            from auto_annotate.tta import TtaDetector

            detector = TtaDetector(detector, self.tta)
        return detector

    def run_inference(self, batch: Sequence, model: Detector,
                      inference_args: dict | None = None) -> Iterable[PredictionResult]:
        outcomes = predict_batch(list(batch), model)  # one per image, in order
        return [PredictionResult(example, outcome)
                for example, outcome in zip(batch, outcomes, strict=True)]

    def get_num_bytes(self, batch: Sequence) -> int:
        return sum(image.upright.nbytes for _, image in batch)

    def get_metrics_namespace(self) -> str:
        return "auto_annotate_model"
