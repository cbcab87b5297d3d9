"""Test-time augmentation: each image seen as several views, their detections fused.

Views: ``flip`` (the image mirrored left to right) and ``tiles`` (four overlapping crops, each
two thirds of the width and height, so small objects reach the model larger). Every view's
boxes are mapped back into the image. Boxes of one class that overlap (IoU >= ``FUSE_IOU``)
across views are fused (weighted box fusion): the fused box is the score-weighted mean of the
boxes, and its score the sum of their scores divided by the number of views that could have
seen it whole (the original, the flip, and each tile it lies in without being cut by the
tile's inner edge). A box that only one of two views finds therefore gets half its score:
agreement between views becomes part of the score, and a one-view fluke falls below the
accept threshold. A box cut by a tile's inner edge is left to the views that see it whole.

``TtaDetector`` wraps any Detector and is one itself.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from auto_annotate.boxes import iou_xyxy
from auto_annotate.detections import Detections

__all__ = ["VIEWS", "TtaDetector", "View", "check_views", "fuse", "views_argument", "views_of"]

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
        x0, y0, x1, _ = self.region
        boxes = detections.boxes.astype(np.float64).copy()
        if self.flipped:
            boxes[:, [0, 2]] = (x1 - x0) - boxes[:, [2, 0]]
        boxes += [x0, y0, x0, y0]
        keep = self.sees(boxes, image_hw)
        return Detections(boxes[keep], detections.scores[keep], detections.class_ids[keep])

    def sees(self, boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """(N,) whether the view shows each image-pixel box whole: not cut by one of its
        inner edges (edges on the image's border cut nothing)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        keep = np.ones(len(boxes), dtype=bool)
        height, width = image_hw
        x0, y0, x1, y1 = self.region
        for axis, low, high, size in ((0, x0, x1, width), (1, y0, y1, height)):
            if low > 0:
                keep &= boxes[:, axis] > low + EDGE
            if high < size:
                keep &= boxes[:, axis + 2] < high - EDGE
        return keep


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


def fuse(per_view: list[Detections], views: list[View], image_hw: tuple[int, int],
         iou: float = FUSE_IOU) -> Detections:
    """Weighted box fusion of the views' detections (all in image pixels)."""
    entries = [(float(s), int(c), b.astype(np.float64), v) for v, d in enumerate(per_view)
               for b, s, c in zip(d.boxes, d.scores, d.class_ids, strict=True)]
    entries.sort(key=lambda e: -e[0])
    clusters: list[dict] = []
    for score, class_id, box, view in entries:
        candidates = [c for c in clusters if c["class"] == class_id and view not in c["views"]]
        overlaps = iou_xyxy(box, [c["box"] for c in candidates])[0] if candidates else []
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
        seen_by = sum(bool(v.sees(cluster["box"], image_hw)[0]) for v in views)
        possible = max(seen_by, len(cluster["views"]))
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
            results.append(fuse(per_view, views, image.shape[:2]))
        return results
