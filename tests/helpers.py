"""Test helpers: images with coloured rectangles, and tiny SavedModels and ``.tflite``
models that find them.

The colour models follow the Object Detection API export contract (the ``.tflite`` ones
the contract in auto_annotate/litert.py, with a fixed input). They find the bounding
box of strongly red, blue and green pixels, so the right answer is known from the image:
red -> class 1 (score 0.9), blue -> class 2 (score exactly float32(0.7)), green -> class 7
(score 0.95; id 7 is deliberately absent from the test label map).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

RED, BLUE, GREEN = (230, 20, 20), (20, 20, 230), (20, 230, 20)
COLOR_CLASSES = ((RED, 1, 0.9), (BLUE, 2, 0.7), (GREEN, 7, 0.95))
LABEL_MAP = """
# test label map
item { id: 1 name: "flame" }
item {
  id: 2
  name: 'smoke_raw'
  display_name: "smoke"
}
"""


def draw(size_wh: tuple[int, int], rects=(), background=(90, 90, 90)) -> np.ndarray:
    """uint8 RGB image (H, W, 3) with ``rects``: (color, (xmin, ymin, xmax, ymax)) in
    0-based continuous pixel coordinates (xmax exclusive)."""
    width, height = size_wh
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = background
    for color, (x0, y0, x1, y1) in rects:
        pixels[y0:y1, x0:x1] = color
    return pixels


def save(path: Path, pixels: np.ndarray, orientation: int = 1, mode: str | None = None,
         **params) -> Path:
    """Saves pixels (optionally converted to ``mode``) with an EXIF orientation tag."""
    image = Image.fromarray(pixels)
    if mode is not None:
        image = image.convert(mode)
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        params["exif"] = exif.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **params)
    return path


def _color_boxes(image):
    """Normalized yxyx boxes, scores and classes of the colour regions in one image."""
    import tensorflow as tf

    pixels = tf.cast(image, tf.float32)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    masks = [(red > 150) & (green < 100) & (blue < 100),
             (blue > 150) & (red < 100) & (green < 100),
             (green > 150) & (red < 100) & (blue < 100)]
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    boxes, scores = [], []
    for mask, (_, _, score) in zip(masks, COLOR_CLASSES, strict=True):
        rows, cols = tf.reduce_any(mask, axis=1), tf.reduce_any(mask, axis=0)
        first_row = tf.cast(tf.argmax(tf.cast(rows, tf.int32)), tf.float32)
        last_row = height - tf.cast(tf.argmax(tf.cast(rows[::-1], tf.int32)), tf.float32)
        first_col = tf.cast(tf.argmax(tf.cast(cols, tf.int32)), tf.float32)
        last_col = width - tf.cast(tf.argmax(tf.cast(cols[::-1], tf.int32)), tf.float32)
        boxes.append(tf.stack([first_row / height, first_col / width,
                               last_row / height, last_col / width]))
        scores.append(tf.where(tf.reduce_any(rows), tf.constant(score, tf.float32), 0.0))
    boxes, scores = tf.stack(boxes), tf.stack(scores)
    classes = tf.constant([float(c) for _, c, _ in COLOR_CLASSES])
    order = tf.argsort(scores, direction="DESCENDING")
    count = tf.reduce_sum(tf.cast(scores > 0, tf.float32))
    return tf.gather(boxes, order), tf.gather(scores, order), tf.gather(classes, order), count


def build_color_model(export_dir: Path, dtype: str = "uint8", batch: int | None = None,
                      size_hw: tuple[int, int] | None = None,
                      outputs: tuple[str, ...] | None = None,
                      signature: str = "serving_default") -> Path:
    """Saves a colour-finding SavedModel with the given input signature.

    Args:
        dtype: "uint8", "float32", "int32" (an unusable one) or "string" (encoded images).
        batch: fixed batch size or None for dynamic.
        size_hw: fixed (height, width) or None for dynamic.
        outputs: output names to keep (default: all four of the contract).
        signature: signature name to export under.
    """
    import tensorflow as tf

    keep = outputs or ("detection_boxes", "detection_scores", "detection_classes",
                       "num_detections")
    if dtype == "string":
        spec = tf.TensorSpec([batch], tf.string)
    else:
        height, width = size_hw or (None, None)
        spec = tf.TensorSpec([batch, height, width, 3], getattr(tf, dtype))

    def detect(input_tensor):
        images = input_tensor
        if dtype == "string":
            images = tf.map_fn(lambda data: tf.io.decode_image(data, channels=3,
                                                               expand_animations=False),
                               images, fn_output_signature=tf.TensorSpec([None, None, 3],
                                                                         tf.uint8))
        result = tf.map_fn(_color_boxes, images, fn_output_signature=(
            tf.float32, tf.float32, tf.float32, tf.float32))
        named = dict(zip(("detection_boxes", "detection_scores", "detection_classes",
                          "num_detections"), result, strict=True))
        return {key: value for key, value in named.items() if key in keep}

    module = tf.Module()
    module.detect = tf.function(detect, input_signature=[spec])
    tf.saved_model.save(module, str(export_dir),
                        signatures={signature: module.detect.get_concrete_function()})
    return export_dir


def build_color_tflite(path: Path, size_hw: tuple[int, int] | None = (64, 96),
                       dtype: str = "float32", batch: int | None = 1,
                       outputs: tuple[str, ...] | None = None, rank: int = 4,
                       signature: bool = True) -> Path:
    """Converts the colour model into a ``.tflite`` file with the contract's fixed input.

    The model finds the colour patches in its (letterboxed) input, so the boxes it returns
    are right only if letterboxing and the mapping back are.

    Args:
        size_hw: the input's fixed (height, width), or None for a free size (unusable).
        dtype: "float32", "uint8", or an unusable one ("int32").
        batch: the declared batch: 1, or None for a free one.
        outputs: output names to keep (default: all four of the contract).
        rank: 4 (``[batch, H, W, 3]``) or 3 (``[H, W, 3]``, unusable).
        signature: False converts a TF1 graph, which gives a model without signatures
            (its tensors carry the output names).
    """
    import tensorflow as tf

    keep = outputs or ("detection_boxes", "detection_scores", "detection_classes",
                       "num_detections")
    height, width = size_hw or (None, None)
    shape = [batch, height, width, 3] if rank == 4 else [height, width, 3]

    def detect(images):
        boxes, scores, classes, count = _color_boxes(images[0] if rank == 4 else images)
        named = {"detection_boxes": boxes[None], "detection_scores": scores[None],
                 "detection_classes": classes[None], "num_detections": count[None]}
        return {key: tf.identity(value, name=key) for key, value in named.items()
                if key in keep}

    if signature:
        module = tf.Module()
        module.detect = tf.function(detect, input_signature=[
            tf.TensorSpec(shape, getattr(tf, dtype), name="images")])
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [module.detect.get_concrete_function()], module)
        data = converter.convert()
    else:
        with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
            images = tf.compat.v1.placeholder(getattr(tf, dtype), shape, name="images")
            data = tf.compat.v1.lite.TFLiteConverter.from_session(
                session, [images], list(detect(images).values())).convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# The classic SSD .tflite post-processing op: TF's converter turns a function that declares
# it "implements" TFLite_Detection_PostProcess into that op.
_POSTPROCESS_ATTRS = (("max_detections", "i", 2), ("max_classes_per_detection", "i", 1),
                      ("detections_per_class", "i", 2), ("use_regular_nms", "b", "false"),
                      ("nms_score_threshold", "f", 0.0), ("nms_iou_threshold", "f", 0.5),
                      ("num_classes", "i", 2), ("y_scale", "f", 1.0), ("x_scale", "f", 1.0),
                      ("h_scale", "f", 1.0), ("w_scale", "f", 1.0))
# Anchors (y centre, x centre, height, width), normalized to the model input; with zero box
# encodings they are the boxes: anchor 0 is yxyx (0, 0, 0.5, 0.5), anchor 1 (0.5, 0.5, 1, 1).
POSTPROCESS_ANCHORS = ((0.25, 0.25, 0.5, 0.5), (0.75, 0.75, 0.5, 0.5))


def build_postprocess_tflite(path: Path, size_hw: tuple[int, int] = (64, 96)) -> Path:
    """A ``.tflite`` ending in a TFLite_Detection_PostProcess op, outputs named output_0-3.

    Anchor 0 gets class index 1 (label-map id 2) with score 0.8 when the input's mean is
    bright (above 127), else class index 0 (id 1) with 0.6; anchor 1 always scores 0.3 for
    class index 0. So the op returns two detections: a box, classes, scores and a count.
    """
    import tensorflow as tf

    implements = " ".join(['name: "TFLite_Detection_PostProcess"'] + [
        f'attr {{ key: "{key}" value {{ {kind}: {value} }} }}'
        for key, kind, value in _POSTPROCESS_ATTRS])

    @tf.function(experimental_implements=implements)
    def postprocess(box_encodings, class_predictions, anchors):
        return tf.constant(0.0), tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)

    def detect(images):
        bright = tf.cast(tf.reduce_mean(images) > 127.0, tf.float32)
        first = tf.stack([0.0, 0.6 * (1 - bright), 0.8 * bright])  # background, id 1, id 2
        scores = tf.stack([first, tf.constant([0.0, 0.3, 0.0])])[None]
        return postprocess(tf.zeros([1, 2, 4]), scores, tf.constant(POSTPROCESS_ANCHORS))

    module = tf.Module()
    module.detect = tf.function(detect, input_signature=[
        tf.TensorSpec([1, *size_hw, 3], tf.float32, name="images")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.detect.get_concrete_function()], module)
    converter.allow_custom_ops = True
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(converter.convert())
    return path


class FakeColorDetector:
    """The colour model in NumPy, implementing the Detector protocol without TensorFlow.

    Records every batch it is given; ``fail_on`` makes the n-th call (1-based) raise.
    """

    def __init__(self, max_batch: int = 1, fail_on: int | None = None,
                 error: type[BaseException] = RuntimeError) -> None:
        self.max_batch, self.fail_on, self.error = max_batch, fail_on, error
        self.batches: list[list[tuple[int, int]]] = []

    def batch_key(self, image_hw):
        return tuple(image_hw)

    def predict(self, images):
        from auto_annotate.detections import Detections

        self.batches.append([image.shape[:2] for image in images])
        if self.fail_on is not None and len(self.batches) == self.fail_on:
            raise self.error("fake model failure")
        results = []
        for image in images:
            boxes, scores, classes = [], [], []
            for color, class_id, score in COLOR_CLASSES:
                rows, cols = np.nonzero(np.all(image == np.array(color, np.uint8), axis=2))
                if len(rows):
                    boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
                    scores.append(score)
                    classes.append(class_id)
            results.append(Detections(np.array(boxes, np.float32).reshape(-1, 4),
                                      scores, classes))
        return results
