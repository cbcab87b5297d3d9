"""The one in-memory detection type that flows from a model to the writers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Detections", "non_finite_problem"]


@dataclass(frozen=True)
class Detections:
    """Detections of one image.

    Attributes:
        boxes: float32 array (N, 4) of absolute pixel ``xmin, ymin, xmax, ymax``,
            0-based continuous coordinates (the left edge of the image is x=0, the right
            edge x=width), in the frame the producer states (the stored pixels unless a
            function says otherwise).
        scores: float32 array (N,) of confidences in [0, 1].
        class_ids: int64 array (N,) of label-map ids (1-based).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        if not len(boxes) == len(scores) == len(class_ids):
            raise ValueError(
                f"Detections: {len(boxes)} boxes, {len(scores)} scores and "
                f"{len(class_ids)} class ids; they must be equal in number")
        for array in (boxes, scores, class_ids):
            array.flags.writeable = False
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)

    @classmethod
    def empty(cls) -> Detections:
        """Returns detections with no box."""
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, mask: np.ndarray) -> Detections:
        """Returns the detections where ``mask`` (bool (N,) or indices) selects."""
        return Detections(self.boxes[mask], self.scores[mask], self.class_ids[mask])

    def at_or_above(self, threshold: float) -> Detections:
        """Keeps detections whose score >= threshold, compared in float32.

        Scores are float32; comparing them with a float64 threshold would drop a score of
        exactly float32(0.7) at threshold 0.7, since float32(0.7) < 0.7 in float64.
        """
        return self.select(self.scores >= np.float32(threshold))


def non_finite_problem(detections: Detections) -> str | None:
    """Why the model output for one image is unusable (NaN or infinite values), or None.

    Such boxes are never clipped into the image: a clipped infinite box is a garbage label.
    """
    bad_boxes = int((~np.isfinite(detections.boxes)).any(axis=1).sum())
    bad_scores = int((~np.isfinite(detections.scores)).sum())
    if not bad_boxes and not bad_scores:
        return None
    parts = [f"{count} {what}" for count, what in ((bad_boxes, "box(es) with non-finite "
             "coordinates"), (bad_scores, "non-finite score(s)")) if count]
    return f"model returned {' and '.join(parts)} (NaN or infinity); image not labelled"
