"""The loop's two score thresholds, chosen every round from data.

A fixed score threshold does not carry over between models, data and rounds (focal-loss
scores after a short training are low: a new-domain model's best score was 0.51). So each
round chooses, from the round model's detections on hand-labelled images it did not train on
(the hand test split):

- ``accept``: the lowest score at which the detections at or above it reach the target
  precision (IoU >= 0.5, same class) with 90% confidence: the Wilson lower bound of their
  precision, not the point estimate. A hand test of a dozen images holds a few dozen boxes;
  on flames (10% labels, seed 0, round 1), 2 hits of 2 detections gave an estimated
  precision of 1.00 while the labels accepted at that score were 67% right. If no score
  reaches the target, nothing is accepted that round, and the choice says so.
- ``uncertain``: the highest score at which the detections find the target recall of the
  boxes the model finds at all (at the labelling floor). A weak model never finds 90% of
  the hand boxes; taking its lowest true positive made nearly every detection an ignore
  region. Detections in [uncertain, accept) are the uncertain band.

When the hand test holds fewer than ``min_boxes`` boxes, or the model found none of them,
precision cannot be estimated. The fallback is a count prior (as in Data Distillation): the
accept threshold is the score at which the unlabelled pool gets as many boxes per image as
the hand labels have, the uncertain threshold the score at which it gets twice as many. The
choice names its source; ``--threshold`` / ``--uncertain_threshold`` force fixed values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

CONFIDENCE_Z = 1.2816  # one-sided 90% normal quantile, for the precision bound
NOTHING = 1.01  # an accept threshold above every score: nothing is accepted


@dataclass(frozen=True)
class Thresholds:
    """A round's thresholds, with the estimates behind them."""

    accept: float
    uncertain: float
    source: str
    precision: float | None = None  # estimated precision of boxes >= accept
    recall: float | None = None     # estimated recall of boxes >= uncertain
    precision_bound: float | None = None  # its 90% lower confidence bound

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if self.accept >= NOTHING:
            return f"accept none, uncertain >= {self.uncertain:.3f} ({self.source})"
        estimate = "" if self.precision is None else \
            f", estimated precision {self.precision:.2f} (90% bound " \
            f"{self.precision_bound:.2f}), recall {self.recall:.2f}"
        return f"accept >= {self.accept:.3f}, uncertain >= {self.uncertain:.3f} " \
               f"({self.source}{estimate})"


def score_table(detections: list[tuple[str, tuple, float]], truth,
                min_iou: float = 0.5) -> list[tuple[float, bool]]:
    """(score, true positive) per detection of one image, matched as COCO does: in
    descending score order, each detection takes the unmatched true box of its class with
    which it has the highest IoU, if that IoU is >= ``min_iou``. Difficult true boxes are
    left out.

    Args:
        detections: (class name, pixel xyxy box, score) per detection.
        truth: the image's VocObjects (the hand label).
    """
    from auto_annotate.boxes import iou_xyxy

    truth = [o for o in truth if not o.difficult]
    taken = [False] * len(truth)
    hits = {}
    for index in sorted(range(len(detections)), key=lambda i: -detections[i][2]):
        name, box, _ = detections[index]
        same = [j for j, o in enumerate(truth) if o.name.lower() == name.lower() and not taken[j]]
        overlaps = iou_xyxy(box, [truth[j].box for j in same])[0] if same else []
        best = int(np.argmax(overlaps)) if len(overlaps) else -1
        hits[index] = bool(best >= 0 and overlaps[best] >= min_iou)
        if hits[index]:
            taken[same[best]] = True
    return [(float(score), hits[i]) for i, (_, _, score) in enumerate(detections)]


def _curve(table: list[tuple[float, bool]], truth_boxes: int):
    """Distinct scores (descending) with precision, recall, hits and count of the detections
    >= each."""
    ordered = sorted(table, key=lambda row: -row[0])
    scores = np.array([s for s, _ in ordered])
    hits = np.cumsum([tp for _, tp in ordered])
    last = np.r_[scores[1:] != scores[:-1], True]  # last index of each distinct score
    count = np.arange(1, len(scores) + 1)
    return (scores[last], (hits / count)[last], (hits / max(truth_boxes, 1))[last], hits[last],
            count[last])


def precision_bound(hits: np.ndarray, count: np.ndarray, z: float = CONFIDENCE_Z):
    """One-sided lower confidence bound of precision (Wilson score interval)."""
    hits, count = np.asarray(hits, float), np.asarray(count, float)
    share = hits / count
    margin = z * np.sqrt(share * (1 - share) / count + z * z / (4 * count * count))
    return (share + z * z / (2 * count) - margin) / (1 + z * z / count)


def from_hand_test(table: list[tuple[float, bool]], truth_boxes: int, target_precision: float,
                   target_recall: float, min_boxes: int) -> Thresholds | None:
    """Thresholds from held-out hand labels; None when they are too few to estimate.

    The accept threshold is the lowest score at which the precision of the detections at or
    above it is at least ``target_precision`` with 90% confidence (its Wilson lower bound),
    so a handful of lucky hits on a small hand test does not pass for precision 0.9. If no
    score gets there, nothing is accepted (``NOTHING``, above every score) and the choice
    says why: on flames, accepting at the best bound instead gave labels 30-67% right. The
    uncertain threshold is the score at which the detections find ``target_recall`` of the
    boxes the model finds at all; with nothing accepted, the detections above it are held
    back for review as suggestions.
    """
    if truth_boxes < min_boxes or not any(tp for _, tp in table):
        return None
    scores, precision, recall, hits, count = _curve(table, truth_boxes)
    bound = np.where(hits > 0, precision_bound(hits, count), -1.0)
    reached = np.flatnonzero(bound >= target_precision)
    source = f"hand test, {truth_boxes} boxes"
    found = np.flatnonzero(recall >= target_recall * recall[-1] - 1e-9)
    if not len(reached):
        best = np.flatnonzero(bound == bound.max())[-1]
        return Thresholds(NOTHING, float(scores[found[0]]), f"{source}; precision "
                          f"{target_precision:g} not shown (best 90% bound {bound[best]:.2f} "
                          f"at {scores[best]:.3f}): nothing accepted",
                          float(precision[best]), float(recall[found[0]]), float(bound[best]))
    accept_at = reached[-1]  # scores descend: the last index is the lowest score
    uncertain_at = max(found[0], accept_at)
    return Thresholds(float(scores[accept_at]), float(scores[uncertain_at]), source,
                      float(precision[accept_at]), float(recall[uncertain_at]),
                      float(bound[accept_at]))


def from_count_prior(pool_scores: list[list[float]], boxes_per_image: float,
                     why: str) -> Thresholds:
    """Fallback: thresholds at which the pool gets 1x and 2x the hand labels' boxes per image."""
    everything = np.sort(np.concatenate([np.asarray(s, float) for s in pool_scores] or
                                        [np.zeros(0)]))[::-1]
    images = max(len(pool_scores), 1)

    def score_for(per_image: float) -> float:
        wanted = max(1, round(per_image * images))
        if not len(everything):
            return 1.0
        return float(everything[min(wanted, len(everything)) - 1])

    accept, uncertain = score_for(boxes_per_image), score_for(2 * boxes_per_image)
    return Thresholds(accept, min(uncertain, accept),
                      f"count prior {boxes_per_image:.2f} boxes per image ({why})")


def fixed(accept: float, uncertain: float) -> Thresholds:
    return Thresholds(accept, min(uncertain, accept), "fixed by --threshold")
