"""The self-check of an exported ``model.tflite`` against the checkpoint it came from.

The TFLite model runs as ``auto_annotate`` runs it (auto_annotate/litert.py: letterboxed as
auto_annotate/letterbox.py does it, boxes mapped back to each image), so the check also
checks the client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from auto_annotate import boxes as box_ops
from auto_annotate.detections import Detections

SCORE_THRESHOLD = 0.3  # detections compared: at or above this score
MATCH_IOU = 0.5  # a pair below this IoU is no match
# A float32 model within this of the checkpoint passes; quantized ones report their numbers.
MIN_IOU = 0.9
MAX_SCORE_DIFFERENCE = 0.01


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


def self_check(candidate: Callable[[np.ndarray], Detections],
               reference: Callable[[np.ndarray], Detections], images: Sequence[np.ndarray],
               quantize: str) -> SelfCheck:
    """Runs both detectors on ``images`` (uint8 RGB, any size; each detector prepares them
    its own way) and pairs their detections."""
    pairs = [pair_up(reference(image), candidate(image)) for image in images]
    ious = [value for p in pairs for value in p.ious]
    differences = [value for p in pairs for value in p.score_differences]
    return SelfCheck(quantize, len(images), sum(p.reference for p in pairs),
                     sum(p.matched for p in pairs), sum(p.extra for p in pairs),
                     min(ious) if ious else None, max(differences) if differences else None)
