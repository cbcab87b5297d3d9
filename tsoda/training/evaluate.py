"""``tsoda evaluate``: COCO-style metrics of a model on a Pascal VOC folder.

Ground truth is read from the VOC XML (boxes in the frame LabelImg shows, as
auto_annotate writes them); detections come from running the model (a SavedModel folder or
a ``.tflite`` file, through ``auto_annotate.load_detector``) exactly as ``auto_annotate``
does, on the upright image. Metrics come from pycocotools.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from auto_annotate import voc
from auto_annotate.errors import AnnotateError
from auto_annotate.label_map import LabelMap
from tsoda.errors import TrainingError


@dataclass
class Metrics:
    """COCO bbox metrics: mAP@0.5, mAP@0.5:0.95 and recall (AR@100), with counts."""

    map50: float
    map50_95: float
    recall: float
    images: int
    boxes: int
    per_class_map50: dict[str, float] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    asked: int = 0
    # the skipped images on which the model failed (its call raised, or its output was
    # not finite), as (image, reason)
    model_failed: list[tuple[str, str]] = field(default_factory=list)
    # (score, true positive at IoU 0.5 or the min_iou asked for) per detection, and the
    # boxes they were matched against (difficult ones left out): what
    # tsoda/loop/thresholds.py chooses thresholds from
    score_table: list[tuple[float, bool]] = field(default_factory=list, repr=False)
    scored_boxes: int = 0

    def format(self) -> str:
        lines = [f"images: {self.images}  boxes: {self.boxes}"]
        if self.images < self.asked:
            lines.append(f"warning: scored on {self.images} of {self.asked} images; "
                         f"{self.asked - self.images} could not be scored (listed below)")
        lines += [
                 f"mAP@0.5:      {self.map50:.4f}",
                 f"mAP@0.5:0.95: {self.map50_95:.4f}",
                 f"recall@100:   {self.recall:.4f}"]
        lines += [f"  AP@0.5 {name}: {value:.4f}" for name, value in self.per_class_map50.items()]
        lines += [f"skipped {path}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


class _Coco:
    """Ground truth and detections in pycocotools' dictionary format."""

    def __init__(self, label_map: LabelMap) -> None:
        self.images, self.annotations, self.detections = [], [], []
        self.categories = [{"id": i, "name": n} for i, n in sorted(label_map.names.items())]
        self.label_map = label_map
        self.unknown: list[tuple[str, str]] = []  # (VOC file, class name) not in the map

    def add(self, annotation: voc.VocAnnotation, detections, source: str = "") -> None:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "width": annotation.width,
                            "height": annotation.height})
        for obj in annotation.objects:
            x0, y0, x1, y1 = obj.box
            category = self.label_map.id_of(obj.name)
            if category is None:  # pycocotools would drop it silently
                self.unknown.append((source, obj.name))
                continue
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": image_id,
                "iscrowd": int(obj.difficult),  # an ignore region: neither found nor missed
                "category_id": category,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})
        for box, score, class_id in zip(detections.boxes, detections.scores,
                                        detections.class_ids, strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            self.detections.append({"image_id": image_id, "category_id": int(class_id),
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)})

    def evaluate(self) -> tuple[np.ndarray, dict[str, float]]:
        """COCOeval stats (12 numbers) and AP@0.5 per class; zeros when nothing matched."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        if not self.annotations or not self.detections:
            return np.zeros(12), {c["name"]: 0.0 for c in self.categories}
        with contextlib.redirect_stdout(io.StringIO()):
            truth = COCO()
            truth.dataset = {"images": self.images, "annotations": self.annotations,
                             "categories": self.categories}
            truth.createIndex()
            run = COCOeval(truth, truth.loadRes(self.detections), "bbox")
            run.evaluate()
            run.accumulate()
            run.summarize()
        precision = run.eval["precision"][0, :, :, 0, 2]  # IoU 0.5, all areas, 100 dets
        per_class = {}
        for index, category in enumerate(self.categories):
            values = precision[:, index]
            values = values[values > -1]
            per_class[category["name"]] = float(values.mean()) if len(values) else 0.0
        return np.maximum(run.stats, 0.0), per_class


def evaluate_detector(detector, label_map: LabelMap, data_dir: str | Path,
                      workers: int = 2, min_iou: float = 0.5) -> Metrics:
    """Runs a Detector over every image of ``data_dir`` that has a VOC file; COCO metrics
    (``min_iou``: the IoU at which ``Metrics.score_table`` counts a detection right)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise TrainingError(data_dir, "data folder does not exist")
    pairs = voc.voc_pairs(data_dir)
    if not pairs:
        raise TrainingError(data_dir, "no image with a VOC file")
    return evaluate_pairs(detector, label_map, pairs, workers, min_iou)


def evaluate_pairs(detector, label_map: LabelMap, pairs: list[tuple[Path, Path]],
                   workers: int = 2, min_iou: float = 0.5) -> Metrics:
    """COCO metrics of a Detector on (image, VOC file) pairs; no pair gives zeros.

    Detections of all scores are kept (COCO's mAP integrates over the score ranking). An
    image that cannot be decoded, whose model call fails, or whose model output is not
    finite, and an unreadable VOC file, are listed in ``skipped`` and not scored.
    """
    from auto_annotate import FailedImage, predict_stream
    from auto_annotate.annotate import Task
    from tsoda.loop.thresholds import score_table

    tasks = [Task(Path(image), Path(image).name, Path(xml)) for image, xml in pairs]
    coco, skipped, table, scored_boxes, model_failed = _Coco(label_map), [], [], 0, []
    for outcome in predict_stream(tasks, detector, workers):
        task = outcome.task
        if isinstance(outcome, FailedImage):
            skipped.append((str(task.image), outcome.reason))
            model_failed += skipped[-1:] if outcome.by_model else []
            continue
        image, found = outcome.image, outcome.detections
        try:
            truth = voc.to_upright_frame(voc.read_voc(task.xml), image.stored_hw,
                                         image.orientation)
        except AnnotateError as error:
            skipped.append((str(task.xml), error.problem))
            continue
        coco.add(truth, found, str(task.xml))
        table += score_table([(label_map.name_of(int(c)) or str(c), box, score) for
                              box, score, c in zip(found.boxes, found.scores,
                                                   found.class_ids, strict=True)],
                             truth.objects, min_iou)
        scored_boxes += sum(not o.difficult for o in truth.objects)
    _refuse_unknown(coco.unknown, label_map)
    stats, per_class = coco.evaluate()
    return Metrics(map50=float(stats[1]), map50_95=float(stats[0]), recall=float(stats[8]),
                   images=len(coco.images), boxes=len(coco.annotations),
                   per_class_map50=per_class, skipped=skipped, asked=len(pairs),
                   model_failed=model_failed, score_table=table, scored_boxes=scored_boxes)


def _refuse_unknown(unknown: list[tuple[str, str]], label_map: LabelMap) -> None:
    """Raises when ground truth has classes the label map lacks: scoring without those
    boxes would report a better mAP than the model has."""
    if not unknown:
        return
    files = sorted({path for path, _ in unknown})
    first_path, first_name = unknown[0]
    raise TrainingError(first_path, (
        f"class {first_name!r} is not in the label map ({', '.join(label_map.ordered_names())})"
        f"; {len(unknown)} box(es) in {len(files)} image(s) have classes not in the label "
        f"map ({', '.join(Path(f).name for f in files[:5])}{', ...' if len(files) > 5 else ''}"
        "): fix the labels or the label map; nothing was scored"))


def evaluate(model_path: str | Path, label_map_path: str | Path, data_dir: str | Path,
             output_path: str | Path | None = None, batch_size: int = 8) -> Metrics:
    """Evaluates a model (SavedModel folder or ``.tflite`` file) on a VOC folder and writes
    the metrics as JSON.

    ``output_path`` defaults to ``<model_path>/../eval_<data folder name>.json``.
    """
    from auto_annotate import load_detector
    from auto_annotate.label_map import load_label_map

    label_map = load_label_map(label_map_path)
    metrics = evaluate_detector(load_detector(model_path, batch_size), label_map, data_dir)
    if metrics.images == 0:
        raise TrainingError(data_dir, "no image could be scored: " + "; ".join(
            f"{Path(path).name}: {reason}" for path, reason in metrics.skipped[:3]))
    output = Path(output_path) if output_path else \
        Path(model_path).resolve().parent / f"eval_{Path(data_dir).resolve().name}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    written = {k: v for k, v in asdict(metrics).items() if k != "score_table"}
    output.write_text(json.dumps(written, indent=2), encoding="utf-8")
    return metrics
