"""What labels are worth to a person: auto labels scored against hidden truth.

Used by ``tsoda simulate``, which knows the labels it hid. All matching is one-to-one,
greedy by IoU, per class name, at IoU >= 0.5. A VOC object marked ``difficult`` is an
ignore region (an uncertain detection the loop neither trains as a flame nor as background),
not a label.

Box edits are what a person reviewing the image in LabelImg still has to do: draw each
hidden box that no label matches, delete each label that matches no hidden box, and settle
each ignore region (keep it as a box or delete it). Labelling an image from scratch costs one
edit per hidden box, so edits per hidden box is 1.0 without any help and 0.0 for perfect labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auto_annotate import voc
from auto_annotate.boxes import iou_xyxy

IOU = 0.5
INSIDE = 0.5  # a hidden box is covered by an ignore region when this share of it lies inside


def _inside(truth: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(N,) share of each truth box's area inside the union-free best region."""
    if not len(regions):
        return np.zeros(len(truth))
    top_left = np.maximum(truth[:, None, :2], regions[None, :, :2])
    bottom_right = np.minimum(truth[:, None, 2:], regions[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area = np.maximum((truth[:, 2:] - truth[:, :2]).prod(axis=1), 1e-9)
    return (inter / area[:, None]).max(axis=1)


def _boxes(objects) -> np.ndarray:
    return np.array([o.box for o in objects], dtype=np.float64).reshape(-1, 4)


def matched_pairs(predicted, truth, threshold: float = IOU) -> list[tuple[int, int]]:
    """(predicted index, truth index) pairs: one-to-one, greedy by IoU, same class name."""
    pairs = []
    for name in {o.name.lower() for o in predicted}:
        pred_index = [i for i, o in enumerate(predicted) if o.name.lower() == name]
        true_index = [j for j, o in enumerate(truth) if o.name.lower() == name]
        if not pred_index or not true_index:
            continue
        overlaps = iou_xyxy(_boxes([predicted[i] for i in pred_index]),
                        _boxes([truth[j] for j in true_index]))
        while overlaps.size and overlaps.max() >= threshold:
            i, j = np.unravel_index(overlaps.argmax(), overlaps.shape)
            pairs.append((pred_index[i], true_index[j]))
            overlaps[i, :], overlaps[:, j] = -1, -1
    return pairs


def match_boxes(predicted: voc.VocAnnotation, truth: voc.VocAnnotation,
                threshold: float = IOU) -> int:
    """True positives among ``predicted``'s labels (ignore regions left out)."""
    labels = [o for o in predicted.objects if not o.difficult]
    return len(matched_pairs(labels, list(truth.objects), threshold))


@dataclass
class Effort:
    """Sums over images; the properties are the reported ratios."""

    hidden: int = 0        # hidden (true) boxes
    labelled: int = 0      # hidden boxes matched by a label
    labels: int = 0        # labels written (ignore regions not counted)
    regions: int = 0       # ignore regions written
    edits: int = 0         # box edits a person still has to make
    accepted_hidden: int = 0   # hidden boxes in images that carry labels
    false_background: int = 0  # of those: neither labelled nor inside an ignore region

    def add(self, other: Effort) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def labelled_share(self) -> float:
        return self.labelled / self.hidden if self.hidden else 0.0

    @property
    def edits_per_box(self) -> float:
        return self.edits / self.hidden if self.hidden else 0.0

    @property
    def false_background_rate(self) -> float:
        return self.false_background / self.accepted_hidden if self.accepted_hidden else 0.0


def image_effort(predicted: voc.VocAnnotation | None, truth: voc.VocAnnotation) -> Effort:
    """One image: ``predicted`` None means it has no labels (a person starts from scratch)."""
    hidden = len(truth.objects)
    if predicted is None:
        return Effort(hidden=hidden, edits=hidden)
    labels = [o for o in predicted.objects if not o.difficult]
    regions = [o for o in predicted.objects if o.difficult]
    pairs = matched_pairs(labels, list(truth.objects))
    found = {j for _, j in pairs}
    rest = [o for j, o in enumerate(truth.objects) if j not in found]
    settled = len(matched_pairs(regions, rest))  # a region on a missed box: one edit, no draw
    covered = int((_inside(_boxes(rest), _boxes(regions)) >= INSIDE).sum()) if rest else 0
    return Effort(hidden=hidden, labelled=len(pairs), labels=len(labels), regions=len(regions),
                  edits=(hidden - len(pairs) - settled) + (len(labels) - len(pairs))
                  + len(regions),
                  accepted_hidden=hidden, false_background=len(rest) - covered)
