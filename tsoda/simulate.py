"""``tsoda simulate``: what the loop is worth, measured on a fully labelled VOC folder.

A seeded random fraction of the images keeps its labels (the hand labels); the others are
offered to the loop as unlabelled, their labels hidden. After the loop, each round's
accepted labels are compared with the hidden truth (precision and recall at IoU >= 0.5),
each round's model is evaluated on the test folder, and two baselines are trained with the
same total steps: the hand labels alone, and all the labels. The user's folders are only
read: the split is made of symbolic links (copies where links are not possible).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from auto_annotate import voc
from auto_annotate.errors import AnnotateError
from auto_annotate.fileio import atomic_write_text
from tsoda.loop import LoopSettings, TsodaLoop, split_ids


def _link(source: Path, target: Path) -> None:
    if target.exists() or target.is_symlink():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(source.resolve(), target)
    except OSError:
        shutil.copyfile(source, target)


def make_split(dataset_dir: Path, out: Path, fraction: float, seed: int) -> tuple[Path, Path]:
    """Links the hand part (images and XML) into out/L and the rest (images only) into out/U."""
    images = [image for image, _ in voc.voc_pairs(dataset_dir)]
    if not images:
        raise AnnotateError(dataset_dir, "no image with a VOC file")
    keep_count = max(1, round(len(images) * fraction))
    ids = [p.name for p in images]
    kept = split_ids(ids, keep_count / len(ids), seed, "simulate")
    for image in images:
        if image.name in kept:
            _link(image, out / "L" / image.name)
            _link(image.with_suffix(".xml"), out / "L" / image.with_suffix(".xml").name)
        else:
            _link(image, out / "U" / image.name)
    return out / "L", out / "U"


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of pixel xyxy boxes."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match_boxes(predicted: voc.VocAnnotation, truth: voc.VocAnnotation,
                threshold: float = 0.5) -> int:
    """True positives: predicted boxes matched one-to-one (greedy, by IoU, same class name)
    to truth boxes with IoU >= threshold."""
    matched = 0
    for name in {o.name.lower() for o in predicted.objects}:
        pred = np.array([o.box for o in predicted.objects if o.name.lower() == name]).reshape(-1, 4)
        true = np.array([o.box for o in truth.objects if o.name.lower() == name]).reshape(-1, 4)
        if not len(pred) or not len(true):
            continue
        overlaps = _iou(pred, true)
        while overlaps.size and overlaps.max() >= threshold:
            i, j = np.unravel_index(overlaps.argmax(), overlaps.shape)
            matched += 1
            overlaps[i, :], overlaps[:, j] = -1, -1
    return matched


@dataclass
class LabelQuality:
    """Accepted labels of one round against the hidden truth (IoU >= 0.5)."""

    images: int = 0
    predicted: int = 0
    truth: int = 0
    matched: int = 0

    @property
    def precision(self) -> float:
        return self.matched / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.matched / self.truth if self.truth else 0.0


def label_quality(journal, dataset_dir: Path) -> dict[int, LabelQuality]:
    """Per round: the accepted auto labels against the dataset's own (hidden) labels."""
    result: dict[int, LabelQuality] = {}
    for row in journal.images("auto"):
        predicted = voc.read_voc(row.xml)
        truth = voc.read_voc(Path(dataset_dir) / (Path(row.image).stem + ".xml"))
        quality = result.setdefault(row.round, LabelQuality())
        quality.images += 1
        quality.predicted += len(predicted.objects)
        quality.truth += len(truth.objects)
        quality.matched += match_boxes(predicted, truth)
    return result


@dataclass(frozen=True)
class Simulation:
    """Everything ``simulate`` needs besides the loop settings."""

    dataset_dir: Path
    labeled_fraction: float
    test_dir: Path | None


def _baseline(name: str, pairs, steps: int, work: Path, trainer, label_map) -> Path:
    from tsoda.tfrecords import write_tfrecords_for_pairs

    folder = work / f"baseline_{name}"
    folder.mkdir(parents=True, exist_ok=True)
    if not list(folder.glob("train.record*")):
        write_tfrecords_for_pairs(pairs, label_map, folder / "train.record")
    checkpoint = trainer.train(folder, str(folder / "train.record*"), steps,
                               trainer.initial_checkpoint)
    return trainer.export(folder, checkpoint)


def _map(evaluate, detector_factory, saved_model, label_map, test_pairs) -> tuple[str, str]:
    if not test_pairs:
        return "", ""
    metrics = evaluate(detector_factory(Path(saved_model)), label_map, test_pairs)
    return f"{metrics.map50:.4f}", f"{metrics.map50_95:.4f}"


def simulate(settings: LoopSettings, simulation: Simulation, trainer, detector_factory,
             label_map, evaluate=None, progress: bool = True, echo=print) -> list[dict]:
    """Runs the loop on a hidden-label split, then the baselines; writes the report."""
    from dataclasses import replace

    from tsoda.evaluate import evaluate_pairs

    evaluate = evaluate or evaluate_pairs
    work = Path(settings.work_dir)
    labeled, unlabeled = make_split(simulation.dataset_dir, work / "split",
                                    simulation.labeled_fraction, settings.seed)
    loop = TsodaLoop(replace(settings, labeled_dir=labeled, unlabeled_dir=unlabeled,
                             work_dir=work / "loop"), trainer, detector_factory, label_map,
                     evaluate, progress, echo)
    loop.run()
    test_pairs = voc.voc_pairs(simulation.test_dir) if simulation.test_dir else []
    quality = label_quality(loop.journal, simulation.dataset_dir)
    rows, total = [], 0
    for r in (r for r in loop.journal.rounds() if r.done):
        total += r.steps
        q = quality.get(r.round, LabelQuality())
        map50, map50_95 = _map(evaluate, detector_factory, r.saved_model, label_map, test_pairs)
        rows.append({"run": f"loop round {r.round}", "steps": total, "accepted": r.accepted,
                     "label_precision": f"{q.precision:.3f}", "label_recall": f"{q.recall:.3f}",
                     "test_map50": map50, "test_map50_95": map50_95,
                     "minutes": f"{r.seconds / 60:.1f}"})
    for name, pairs in (("hand_only", voc.voc_pairs(labeled)), ("all_labels",
                                                          voc.voc_pairs(simulation.dataset_dir))):
        saved = _baseline(name, pairs, total, work, trainer, label_map)
        map50, map50_95 = _map(evaluate, detector_factory, saved, label_map, test_pairs)
        rows.append({"run": f"baseline {name}", "steps": total, "accepted": len(pairs),
                     "label_precision": "", "label_recall": "", "test_map50": map50,
                     "test_map50_95": map50_95, "minutes": ""})
    _write(rows, work / "report")
    for row in rows:
        echo(" | ".join(str(v) for v in row.values()))
    return rows


def _write(rows: list[dict], folder: Path) -> None:
    from tsoda.report import to_csv

    columns = list(rows[0]) if rows else []
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    atomic_write_text(folder / "simulate.md", "\n".join(lines) + "\n")
    atomic_write_text(folder / "simulate.csv", to_csv(rows, columns))
