"""``tsoda export --format tflite``: a trained checkpoint as a LiteRT (TFLite) model.

Model Garden's TFLite path builds the graph: its detection module with ``input_type
tflite`` (no resizing inside) and ``nms_version tflite``, whose NMS becomes TFLite's own
``TFLite_Detection_PostProcess`` op. A small wrapper around it makes the contract:

- signature ``serving_default``, one input ``input_tensor`` float32 [1, H, W, 3] (H, W: the
  config's input size): raw RGB 0-255, letterboxed by the client (auto_annotate/letterbox.py:
  scale ``min(H / h, W / w)``, bilinear without antialiasing, top-left, the rest filled with
  Model Garden's mean colour). The graph normalizes as Model Garden's ``normalize_image``.
- outputs ``detection_boxes`` [1, N, 4] normalized ``ymin, xmin, ymax, xmax`` in the
  letterboxed H x W frame, ``detection_scores`` [1, N], ``detection_classes`` [1, N] float
  label-map ids (as the SavedModel's), ``num_detections`` [1] float. Rows past
  ``num_detections`` are junk.

Facts measured with Model Garden 2.20: its TFLite path hands the op every score column,
background (column 0) included, so the op would report the background as class 0; the
wrapper's detection generator drops that column and the wrapper adds 1 to the classes.
The op returns boxes in input pixels, which the module then divides by the input size;
``normalize_anchor_coordinates`` must stay off or the boxes are divided twice.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from auto_annotate.errors import error_line
from auto_annotate.fileio import atomic_write_bytes, atomic_write_text
from auto_annotate.letterbox import letterbox_image
from auto_annotate.litert import TFLiteDetector, runtime_notes_hidden
from tsoda.config.pipeline import LoadedConfig
from tsoda.errors import TrainingError
from tsoda.training import tflite_check
from tsoda.training.export import latest_checkpoint, prepare, write_config_files

LOG = logging.getLogger(__name__)
INPUT_NAME = "input_tensor"
QUANTIZE = ("none", "fp16", "int8")
MODEL_NAME = "model.tflite"
CHECK_SUFFIX = ".check.json"
CALIBRATION_IMAGES = 100  # int8: training images the activation ranges are measured on
CHECK_IMAGES = 5  # self-check: the first training images


def tflite_params(experiment):
    """A Model Garden ExperimentConfig for the TFLite graph: TFLite's NMS op set up like
    the SavedModel's (per-class NMS unless the config asks for class-agnostic)."""
    from official.core import config_definitions

    params = config_definitions.ExperimentConfig(task=copy.deepcopy(experiment.task))
    generator = params.task.model.detection_generator
    generator.nms_version = "tflite"
    post = generator.tflite_post_processing
    post.max_detections = post.detections_per_class = generator.max_num_detections
    post.max_classes_per_detection = 1
    post.use_regular_nms = not generator.use_class_agnostic_nms
    post.nms_score_threshold = generator.pre_nms_score_threshold
    post.nms_iou_threshold = generator.nms_iou_threshold
    post.normalize_anchor_coordinates = False
    return params


def _foreground(scores: tf.Tensor, num_classes: int) -> tf.Tensor:
    """[B, h, w, anchors * classes] logits without the background column of each anchor."""
    height, width, channels = scores.shape[1:]
    anchors = channels // num_classes
    per_class = tf.reshape(scores, [-1, height, width, anchors, num_classes])
    return tf.reshape(per_class[..., 1:], [-1, height, width, anchors * (num_classes - 1)])


def _foreground_generator(model_config, generator):
    """Model Garden's detection generator, fed foreground scores only (classes from 0)."""
    from official.vision.modeling.layers import detection_generator

    class ForegroundGenerator(detection_generator.MultilevelDetectionGenerator):
        def __call__(self, raw_boxes, raw_scores, anchor_boxes, image_shape,
                     raw_attributes=None):
            scores = {level: _foreground(value, model_config.num_classes)
                      for level, value in raw_scores.items()}
            return super().__call__(raw_boxes, scores, anchor_boxes, image_shape,
                                    raw_attributes)

    return ForegroundGenerator(**generator.get_config())


def detection_module(params, input_hw: tuple[int, int], checkpoint: str, input_type: str):
    """Model Garden's detection module (batch 1) with the checkpoint's weights; for
    ``input_type`` "tflite" its model's NMS sees foreground scores only."""
    import tf_keras
    from official.vision.modeling import factory, retinanet_model
    from official.vision.serving import detection

    model_config = params.task.model
    model = factory.build_retinanet(tf_keras.layers.InputSpec(shape=[1, *input_hw, 3]),
                                    model_config)
    if input_type == "tflite":
        model = retinanet_model.RetinaNetModel(**{
            **model.get_config(),
            "detection_generator": _foreground_generator(model_config,
                                                         model.detection_generator)})
    tf.train.Checkpoint(model=model).read(checkpoint).expect_partial() \
        .assert_existing_objects_matched()
    return detection.DetectionModule(params, batch_size=1, input_image_size=list(input_hw),
                                     input_type=input_type, model=model)


class TfliteServing(tf.Module):
    """The contract around Model Garden's TFLite detection module (see the module doc)."""

    def __init__(self, module, input_hw: tuple[int, int], max_detections: int) -> None:
        super().__init__()
        self._module = module
        self._count = max_detections
        spec = tf.TensorSpec([1, *input_hw, 3], tf.float32, name=INPUT_NAME)
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _serve(self, input_tensor):
        from official.vision.ops import preprocess_ops

        images = preprocess_ops.normalize_image(input_tensor, offset=preprocess_ops.MEAN_RGB,
                                                scale=preprocess_ops.STDDEV_RGB)
        outputs = self._module.serve(images)
        count = self._count
        # broadcast_to: the op's static shapes are placeholders; at run time it is a no-op
        return {
            "detection_boxes": tf.broadcast_to(outputs["detection_boxes"], [1, count, 4]),
            "detection_scores": tf.broadcast_to(outputs["detection_scores"], [1, count]),
            "detection_classes": tf.broadcast_to(outputs["detection_classes"], [1, count])
            + 1.0,
            "num_detections": tf.broadcast_to(outputs["num_detections"], [1]),
        }


def convert(serving: TfliteServing, quantize: str,
            calibration: Callable[[], Iterable[np.ndarray]] | None = None) -> bytes:
    """The TFLite flat buffer of ``serving``. "fp16" stores float16 weights; "int8"
    quantizes weights and activations on the float32 (H, W, 3) frames ``calibration()``
    yields, input and outputs staying float32."""
    function = serving.serve.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], serving)
    if quantize == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([frame[None]] for frame in calibration())
    with runtime_notes_hidden():  # the converter's absl lines: debug log, not the console
        return converter.convert()


def training_images(pipeline, source: str | Path) -> Iterator[np.ndarray]:
    """The images (upright uint8 RGB) of the config's training TFRecords, in order.

    Raises:
        TrainingError: a path of ``train_input_reader`` matches no file (before any reading).
    """
    from tsoda.data.read import read_tfrecords

    patterns = list(pipeline.train_input_reader.tf_record_input_reader.input_path)
    missing = [pattern for pattern in patterns if not tf.io.gfile.glob(pattern)]
    if missing or not patterns:
        raise TrainingError(missing[0] if missing else source,
                            "no such training TFRecord file (train_input_reader."
                            "tf_record_input_reader.input_path)")
    return (record["image"] for record in read_tfrecords(patterns))


def _reference(experiment, checkpoint: str):
    """The checkpoint as ``tsoda export`` makes it a SavedModel (batched NMS, any image
    size): a function from a uint8 image to its Detections."""
    from official.core import config_definitions

    from auto_annotate.model import outputs_to_detections

    params = config_definitions.ExperimentConfig(task=copy.deepcopy(experiment.task))
    params.task.model.detection_generator.nms_version = "batched"
    module = detection_module(params, experiment.input_hw, checkpoint, "image_tensor")
    serve = tf.function(module.serve, reduce_retracing=True)

    def detect(image: np.ndarray):
        outputs = serve(tf.constant(image[None]))
        return outputs_to_detections({key: value.numpy() for key, value in outputs.items()},
                                     0, image.shape[:2])

    return detect


def _quietly(build, *args):
    """``build(*args)`` with auto_annotate's model description kept at debug level (the
    self-check's temporary file is no news to the user)."""
    logger = logging.getLogger("auto_annotate")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        return build(*args)
    finally:
        logger.setLevel(level)


def _convert_and_check(experiment, checkpoint: str, quantize: str, pipeline, source):
    """(flat buffer, SelfCheck); the check is skipped when there are no training images."""
    input_hw = experiment.input_hw
    module = detection_module(tflite_params(experiment), input_hw, checkpoint, "tflite")
    serving = TfliteServing(module, input_hw,
                            experiment.task.model.detection_generator.max_num_detections)

    def calibration():  # exactly as training resized them: int8 ranges react to the last
        # digits (OpenCV's resize, within 0.005 of these values, cost 0.013 mAP@0.5 on flames)
        images = itertools.islice(training_images(pipeline, source), CALIBRATION_IMAGES)
        return (letterbox_image(image, input_hw, use_opencv=False)[0] for image in images)

    content = convert(serving, quantize, calibration)
    try:
        images = list(itertools.islice(training_images(pipeline, source), CHECK_IMAGES))
    except TrainingError as error:
        return content, tflite_check.SelfCheck(quantize, skipped=str(error))
    with tempfile.TemporaryDirectory() as folder:  # the client reads models from files
        path = Path(folder) / MODEL_NAME
        path.write_bytes(content)
        detector = _quietly(TFLiteDetector, path)
        check = tflite_check.self_check(lambda image: detector.predict([image])[0],
                                        _reference(experiment, checkpoint), images, quantize)
    return content, check


def _log(check: tflite_check.SelfCheck) -> None:
    if check.skipped or (check.quantize == "none" and not check.within_tolerance):
        LOG.warning("%s%s", check.format(), "" if check.skipped else
                    "\nWARNING: the TFLite model does not match its checkpoint within "
                    f"tolerance: {'; '.join(check.problems())}")
    else:
        LOG.info("%s", check.format())


@dataclasses.dataclass(frozen=True)
class TfliteExport:
    path: Path
    check: tflite_check.SelfCheck


def export_tflite(config: str | Path | LoadedConfig, model_dir: str | Path,
                  output_dir: str | Path, quantize: str = "none") -> TfliteExport:
    """Exports the latest checkpoint of ``model_dir`` to ``output_dir/model.tflite``;
    ``config`` is the pipeline.config (parsed, or its path).

    The model is converted and self-checked in memory, then written atomically: a failing
    export leaves the previous ``model.tflite`` in place. The self-check runs the TFLite
    model on the first CHECK_IMAGES training images (letterboxed) and the checkpoint as
    the SavedModel export runs it, pairs detections scoring >= 0.3 by class and IoU, and
    writes the numbers to ``model.tflite.check.json``. A float32 model ("none") must match
    (every detection paired, IoU >= 0.9, score difference <= 0.01) or a warning says by how
    much it does not; quantized models report their numbers. Without training TFRecords the
    check is skipped with a warning; int8 needs them (calibration) and stops before any work.

    Raises:
        PipelineConfigError: the config cannot be used (e.g. no label map).
        TrainingError: no checkpoint, int8 without training TFRecords, or the conversion
            failed (the previous model.tflite is kept).
    """
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    config, label_map, experiment = prepare(config)
    pipeline, source = config.message, config.source
    checkpoint = latest_checkpoint(model_dir)
    if quantize == "int8":
        training_images(pipeline, source)  # refuses missing records now
    from tensorflow.lite.python.convert_phase import ConverterError

    try:
        content, check = _convert_and_check(experiment, checkpoint, quantize, pipeline,
                                            source)
    except (tf.errors.OpError, ValueError, AssertionError, RuntimeError, ConverterError) \
            as error:
        raise TrainingError(checkpoint, f"TFLite export failed ({error_line(error)}); the "
                                        f"previous {MODEL_NAME} is kept") from None
    path = _write(Path(output_dir), content, check, pipeline, label_map)
    LOG.info("exported %s to %s (%s)", checkpoint, path, quantize)
    return TfliteExport(path, check)


def _write(output_dir: Path, content: bytes, check, pipeline, label_map) -> Path:
    """Writes the model, its self-check numbers and its config files; logs the check."""
    path = output_dir / MODEL_NAME
    atomic_write_bytes(path, content)
    atomic_write_text(path.with_name(MODEL_NAME + CHECK_SUFFIX),
                      json.dumps(check.to_json(), indent=2) + "\n")
    write_config_files(output_dir, pipeline, label_map)
    _log(check)
    return path
