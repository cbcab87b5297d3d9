"""Test-time augmentation: each image seen as several views, their detections fused.

Views: ``flip`` (the image mirrored left to right) and ``tiles`` (four overlapping crops, each
two thirds of the width and height, so small objects reach the model larger). Every view's
boxes are mapped back into the image. Boxes of one class that overlap (IoU >= ``FUSE_IOU``)
across views are fused (weighted box fusion): the fused box is the score-weighted mean of the
boxes, and its score the sum of their scores divided by the number of views that could have
seen it (the original, the flip, and each tile holding its centre). A box that only one of two
views finds therefore gets half its score: agreement between views becomes part of the score,
and a one-view fluke falls below the accept threshold. A box cut by a tile's inner edge is left
to the views that see it whole.

``TtaDetector`` wraps any Detector and is one itself.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from auto_annotate.detections import Detections

VIEWS = ("flip", "tiles")
FUSE_IOU = 0.55
TILE_SHARE = 2 / 3  # a tile's width and height, as a share of the image's
EDGE = 1.0  # pixels: a box this close to a tile's inner edge is cut by it


@dataclass(frozen=True)
class View:
    """A view of an image: ``region`` is the image area it shows (xyxy), ``flipped`` says
    whether it is mirrored."""

    region: tuple[int, int, int, int]
    flipped: bool = False

    def pixels(self, image: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.region
        crop = image[y0:y1, x0:x1]
        return np.ascontiguousarray(crop[:, ::-1] if self.flipped else crop)

    def to_image(self, detections: Detections, image_hw: tuple[int, int]) -> Detections:
        """The view's boxes in image pixels; boxes cut by an inner tile edge are dropped."""
        x0, y0, x1, y1 = self.region
        boxes = detections.boxes.astype(np.float64).copy()
        if self.flipped:
            boxes[:, [0, 2]] = (x1 - x0) - boxes[:, [2, 0]]
        keep = np.ones(len(boxes), dtype=bool)
        height, width = image_hw
        for axis, low, high, size in ((0, x0, x1, width), (1, y0, y1, height)):
            if low > 0:
                keep &= boxes[:, axis] > EDGE
            if high < size:
                keep &= boxes[:, axis + 2] < (high - low) - EDGE
        boxes += [x0, y0, x0, y0]
        return Detections(boxes[keep], detections.scores[keep], detections.class_ids[keep])

    def holds(self, point_xy: np.ndarray) -> bool:
        x0, y0, x1, y1 = self.region
        return bool(x0 <= point_xy[0] <= x1 and y0 <= point_xy[1] <= y1)


def views_of(image_hw: tuple[int, int], names: Sequence[str]) -> list[View]:
    """The original view, then the named ones."""
    height, width = image_hw
    views = [View((0, 0, width, height))]
    if "flip" in names:
        views.append(View((0, 0, width, height), flipped=True))
    if "tiles" in names:
        tile_w, tile_h = round(width * TILE_SHARE), round(height * TILE_SHARE)
        for y0 in (0, height - tile_h):
            for x0 in (0, width - tile_w):
                views.append(View((x0, y0, x0 + tile_w, y0 + tile_h)))
    return views


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=1)
    union = (box[2:] - box[:2]).prod() + (boxes[:, 2:] - boxes[:, :2]).prod(axis=1) - inter
    return inter / np.maximum(union, 1e-9)


def fuse(per_view: list[Detections], views: list[View], iou: float = FUSE_IOU) -> Detections:
    """Weighted box fusion of the views' detections (all in image pixels)."""
    entries = [(float(s), int(c), b.astype(np.float64), v) for v, d in enumerate(per_view)
               for b, s, c in zip(d.boxes, d.scores, d.class_ids, strict=True)]
    entries.sort(key=lambda e: -e[0])
    clusters: list[dict] = []
    for score, class_id, box, view in entries:
        candidates = [c for c in clusters if c["class"] == class_id and view not in c["views"]]
        overlaps = _iou(box, np.array([c["box"] for c in candidates])) if candidates else []
        best = int(np.argmax(overlaps)) if len(overlaps) else -1
        if best >= 0 and overlaps[best] >= iou:
            cluster = candidates[best]
        else:
            cluster = {"class": class_id, "views": set(), "weighted": np.zeros(4), "sum": 0.0}
            clusters.append(cluster)
        cluster["views"].add(view)
        cluster["weighted"] += score * box
        cluster["sum"] += score
        cluster["box"] = cluster["weighted"] / cluster["sum"]
    boxes, scores, classes = [], [], []
    for cluster in clusters:
        centre = (cluster["box"][:2] + cluster["box"][2:]) / 2
        possible = max(sum(v.holds(centre) for v in views), len(cluster["views"]))
        boxes.append(cluster["box"])
        scores.append(min(cluster["sum"] / possible, 1.0))
        classes.append(cluster["class"])
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4)[order],
                      np.asarray(scores)[order], np.asarray(classes)[order])


def check_views(views: Sequence[str]) -> tuple[str, ...]:
    """The views as a tuple; ValueError names any unknown one."""
    unknown = sorted(set(views) - set(VIEWS))
    if unknown or not views:
        raise ValueError(f"unknown TTA view(s) {', '.join(unknown) or '(none given)'}; choose "
                         f"from {', '.join(VIEWS)}")
    return tuple(views)


def views_argument(text: str) -> tuple[str, ...]:
    """argparse type for ``--tta``: comma-separated view names."""
    import argparse

    try:
        return check_views([v.strip() for v in text.split(",") if v.strip()])
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class TtaDetector:
    """A Detector that runs ``inner`` on several views of each image and fuses them."""

    def __init__(self, inner, views: Sequence[str] = ("flip",)) -> None:
        self.inner, self.views = inner, check_views(views)
        self.max_batch = getattr(inner, "max_batch", 1)

    def batch_key(self, image_hw: tuple[int, int]) -> Hashable:
        return self.inner.batch_key(image_hw)

    def _run(self, crops: list[np.ndarray]) -> list[Detections]:
        """The inner detector on crops, in groups it accepts (same batch key, max_batch)."""
        results: list[Detections | None] = [None] * len(crops)
        groups: dict[Hashable, list[int]] = {}
        for index, crop in enumerate(crops):
            groups.setdefault(self.inner.batch_key(crop.shape[:2]), []).append(index)
        for indices in groups.values():
            for start in range(0, len(indices), max(1, self.max_batch)):
                chunk = indices[start:start + max(1, self.max_batch)]
                for index, found in zip(chunk, self.inner.predict([crops[i] for i in chunk]),
                                        strict=True):
                    results[index] = found
        return results

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        plans = [views_of(image.shape[:2], self.views) for image in images]
        crops = [view.pixels(image) for image, views in zip(images, plans, strict=True)
                 for view in views]
        found = iter(self._run(crops))
        results = []
        for image, views in zip(images, plans, strict=True):
            per_view = [view.to_image(next(found), image.shape[:2]) for view in views]
            results.append(fuse(per_view, views))
        return results
