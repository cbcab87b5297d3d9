"""The TFLite model's input contract (letterboxing), and the self-check of an exported
``model.tflite`` against the checkpoint it came from.

A client gives the model a float32 [1, H, W, 3] frame of raw RGB values 0-255: the image scaled
by ``min(H / h, W / w)`` to ``round(h * scale) x round(w * scale)`` (bilinear, no
antialiasing), at the top-left, the rest filled with :data:`LETTERBOX_FILL`, Model Garden's
mean colour. The model normalizes inside, so the fill becomes the zeros Model Garden pads with.
Boxes come back normalized ``ymin, xmin, ymax, xmax`` in that frame;
:func:`frame_to_image` maps them back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from auto_annotate import boxes as box_ops
from auto_annotate.detections import Detections

# Model Garden's preprocess_ops.MEAN_RGB: ImageNet's mean colour in 0-255 RGB
LETTERBOX_FILL = (0.485 * 255, 0.456 * 255, 0.406 * 255)
SCORE_THRESHOLD = 0.3  # detections compared: at or above this score
MATCH_IOU = 0.5  # a pair below this IoU is no match
# A float32 model within this of the checkpoint passes; quantized ones report their numbers.
MIN_IOU = 0.9
MAX_SCORE_DIFFERENCE = 0.01


def scaled_hw(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the image inside the letterboxed frame, as Model Garden rounds it."""
    scale = min(input_hw[0] / image_hw[0], input_hw[1] / image_hw[1])
    return (int(np.round(image_hw[0] * scale)), int(np.round(image_hw[1] * scale)))


def letterbox(image: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """The model input for a uint8 (h, w, 3) RGB image: float32 (H, W, 3), values 0-255."""
    import tensorflow as tf

    height, width = scaled_hw(image.shape[:2], input_hw)
    resized = tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bilinear",
                              antialias=False).numpy()
    frame = np.empty((*input_hw, 3), np.float32)
    frame[:] = LETTERBOX_FILL
    frame[:height, :width] = resized
    return frame


def frame_to_image(outputs: dict[str, np.ndarray], input_hw: tuple[int, int],
                   image_hw: tuple[int, int]) -> Detections:
    """The model's outputs for a letterboxed image as Detections in the image's pixel frame
    (rows cut to ``num_detections``, boxes clipped to the image)."""
    count = int(np.asarray(outputs["num_detections"]).reshape(-1)[0])
    inside = scaled_hw(image_hw, input_hw)
    in_frame = box_ops.normalized_yxyx_to_pixel_xyxy(
        outputs["detection_boxes"].reshape(-1, 4)[:count], input_hw)
    scale_x, scale_y = inside[1] / image_hw[1], inside[0] / image_hw[0]
    pixels = in_frame / np.array([scale_x, scale_y, scale_x, scale_y], np.float32)
    return Detections(box_ops.clip_xyxy(pixels, image_hw),
                      outputs["detection_scores"].reshape(-1)[:count].astype(np.float32),
                      np.rint(outputs["detection_classes"].reshape(-1)[:count]).astype(np.int64))


def tflite_runner(model_content: bytes) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The ``serving_default`` signature of a TFLite flat buffer, called with a (H, W, 3)
    float32 frame; returns its outputs by name."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # LiteRT's own package is the supported one; TF still ships one
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    runner = Interpreter(model_content=model_content).get_signature_runner("serving_default")
    (name,) = runner.get_input_details()
    return lambda frame: runner(**{name: frame[None].astype(np.float32)})


@dataclasses.dataclass(frozen=True)
class Pairs:
    """How one image's TFLite detections pair up with the reference's."""

    reference: int  # reference detections at or above the score threshold
    matched: int  # of those, how many have a TFLite partner (same class, IoU >= MATCH_IOU)
    extra: int  # TFLite detections at or above the threshold with no reference partner
    ious: tuple[float, ...]  # per pair where either score reaches the threshold
    score_differences: tuple[float, ...]


def pair_up(reference: Detections, candidate: Detections,
            threshold: float = SCORE_THRESHOLD) -> Pairs:
    """Pairs each reference detection, best score first, with the unpaired candidate of the
    same class that overlaps it most (IoU >= MATCH_IOU). Low-score detections take part
    too, so a detection just above the threshold in one model and just below it in the
    other counts as a score difference, not as a missing detection."""
    ious = box_ops.iou_xyxy(reference.boxes, candidate.boxes)
    ious[reference.class_ids[:, None] != candidate.class_ids[None, :]] = 0.0
    free = np.ones(len(candidate), bool)
    partner = np.full(len(reference), -1)
    for row in np.argsort(-reference.scores, kind="stable"):
        options = np.where(free, ious[row], 0.0)
        if len(options) and options.max() >= MATCH_IOU:
            partner[row] = int(options.argmax())
            free[partner[row]] = False
    threshold = np.float32(threshold)
    paired = [(row, col) for row, col in enumerate(partner) if col >= 0
              and max(reference.scores[row], candidate.scores[col]) >= threshold]
    above = reference.scores >= threshold
    return Pairs(int(above.sum()), int((above & (partner >= 0)).sum()),
                 int((free & (candidate.scores >= threshold)).sum()),
                 tuple(float(ious[r, c]) for r, c in paired),
                 tuple(float(abs(reference.scores[r] - candidate.scores[c])) for r, c in paired))


@dataclasses.dataclass(frozen=True)
class SelfCheck:
    """The TFLite model against its checkpoint on a few training images."""

    quantize: str
    images: int = 0
    reference: int = 0
    matched: int = 0
    extra: int = 0
    min_iou: float | None = None
    max_score_difference: float | None = None
    skipped: str | None = None

    def problems(self) -> list[str]:
        """What is beyond the float32 tolerance, and by how much (empty: within it)."""
        found = []
        if self.matched < self.reference:
            found.append(f"{self.reference - self.matched} of {self.reference} detections "
                         "unmatched")
        if self.extra:
            found.append(f"{self.extra} extra detections")
        if self.min_iou is not None and self.min_iou < MIN_IOU:
            found.append(f"min IoU {self.min_iou:.3f} < {MIN_IOU}")
        if self.max_score_difference is not None and \
                self.max_score_difference > MAX_SCORE_DIFFERENCE:
            found.append(f"max score difference {self.max_score_difference:.4f} > "
                         f"{MAX_SCORE_DIFFERENCE}")
        return found

    @property
    def within_tolerance(self) -> bool:
        return self.skipped is None and not self.problems()

    def format(self) -> str:
        if self.skipped:
            return f"self-check skipped: {self.skipped}"

        def number(value: float | None, digits: int) -> str:
            return "n/a" if value is None else f"{value:.{digits}f}"

        extra = f", {self.extra} extra" if self.extra else ""
        return (f"self-check: {self.matched} of {self.reference} detections matched (min IoU "
                f"{number(self.min_iou, 3)}, max score difference "
                f"{number(self.max_score_difference, 4)}){extra} on {self.images} images")

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "score_threshold": SCORE_THRESHOLD,
                "tolerance": {"min_iou": MIN_IOU, "max_score_difference": MAX_SCORE_DIFFERENCE,
                              "applies_to": "quantize none"},
                "within_tolerance": self.within_tolerance, "summary": self.format()}


def self_check(run_tflite: Callable[[np.ndarray], dict], reference: Callable[[np.ndarray],
               Detections], images: Sequence[np.ndarray], input_hw: tuple[int, int],
               quantize: str) -> SelfCheck:
    """Runs the TFLite model on the letterboxed ``images`` (uint8 RGB, any size) and the
    reference on the images themselves, and pairs their detections."""
    pairs = [pair_up(reference(image), frame_to_image(run_tflite(letterbox(image, input_hw)),
                                                      input_hw, image.shape[:2]))
             for image in images]
    ious = [value for p in pairs for value in p.ious]
    differences = [value for p in pairs for value in p.score_differences]
    return SelfCheck(quantize, len(images), sum(p.reference for p in pairs),
                     sum(p.matched for p in pairs), sum(p.extra for p in pairs),
                     min(ious) if ious else None, max(differences) if differences else None)
