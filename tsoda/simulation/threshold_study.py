"""Thresholds studied without training: a finished round's detections against hidden truth.

A round labels its pool down to a low score floor and keeps every score in its manifest, so
every (accept, uncertain) pair can be replayed on those outputs: what the accepted labels'
precision would have been, how many hidden boxes they would have found, the box edits left
and the false-background rate, with and without ignore regions. It also checks the round's own
choice: the precision estimated on the hand test against the precision on the hidden pool.
``scripts/threshold_study.py`` is the command line.

:func:`precision_by_score` asks the question before any loop: how precise are a model's
detections above each score on labelled data, at IoU 0.5 and at a looser IoU (which shows
how many "wrong" boxes only disagree with the annotator about the extent)?
``scripts/precision_by_score.py`` is its command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from auto_annotate import voc
from auto_annotate.manifest import MANIFEST_NAME, Status, read_manifest
from tsoda.loop.acceptance import decide
from tsoda.loop.report import markdown_table
from tsoda.loop.thresholds import Thresholds
from tsoda.simulation.effort import Effort, image_effort


@dataclass(frozen=True)
class PoolImage:
    """One pool image of a round: its detections at the floor, their scores, the truth."""

    found: voc.VocAnnotation
    scores: list[float]
    truth: voc.VocAnnotation


def load_round(round_dir: Path, dataset_dir: Path) -> list[PoolImage]:
    """The round's pool (every image it labelled, found something or not).

    Raises:
        AnnotateError: the round has no manifest (not labelled yet, or not a round folder).
    """
    from auto_annotate.errors import AnnotateError

    if not (Path(round_dir) / "labels" / MANIFEST_NAME).is_file():
        raise AnnotateError(round_dir, "no labelling manifest: not a finished round's folder")
    images = []
    for image_id, record in read_manifest(Path(round_dir) / "labels" / MANIFEST_NAME).items():
        if record.status not in (Status.ANNOTATED, Status.EMPTY):
            continue
        name = Path(image_id).name
        truth = voc.read_voc(voc.label_path(name, dataset_dir))
        xml = voc.label_path(name, Path(round_dir) / "labels")
        found = voc.read_voc(xml) if record.status is Status.ANNOTATED and xml.is_file() else \
            voc.VocAnnotation(truth.filename, truth.width, truth.height)
        images.append(PoolImage(found, list(record.scores), truth))
    return images


def replay(pool: list[PoolImage], thresholds: Thresholds, ignore_regions: bool) -> dict:
    """What acceptance with these thresholds would have given on this pool."""
    total, accepted, held = Effort(), Effort(), 0
    for image in pool:
        decision = decide(image.found, image.scores, thresholds, ignore_regions)
        labels = decision.annotation if decision.kind == "accept" else None
        effort = image_effort(labels, image.truth)
        total.add(effort)
        held += decision.kind == "hold"
        if labels is not None:
            accepted.add(effort)
    return {"accept": f"{thresholds.accept:.2f}", "uncertain": f"{thresholds.uncertain:.2f}",
            "ignore": "yes" if ignore_regions else "no",
            "accepted_images": sum(1 for image in pool if decide(
                image.found, image.scores, thresholds, ignore_regions).kind == "accept"),
            "held_back": held,
            "precision": f"{accepted.labelled / accepted.labels:.3f}" if accepted.labels else "",
            "labelled_share": f"{total.labelled_share:.3f}",
            "edits_per_box": f"{total.edits_per_box:.3f}",
            "false_background": f"{accepted.false_background_rate:.3f}"}


def grid(pool: list[PoolImage], accepts=None, uncertains=None) -> list[dict]:
    """Every (accept, uncertain <= accept) pair of the grids, with and without ignoring."""
    accepts = accepts if accepts is not None else np.round(np.arange(0.2, 0.91, 0.05), 2)
    uncertains = uncertains if uncertains is not None else np.round(np.arange(0.1, 0.61, 0.1), 2)
    rows = []
    for accept in accepts:
        for uncertain in [u for u in uncertains if u <= accept]:
            for ignore in (False, True):
                rows.append(replay(pool, Thresholds(float(accept), float(uncertain), "grid"),
                                   ignore))
    return rows


def main(argv: list[str] | None = None) -> int:
    """python scripts/threshold_study.py --loop_dir W --dataset_dir D [--round N]"""
    import argparse

    from auto_annotate.console import run_command

    parser = argparse.ArgumentParser(prog="threshold_study.py", description=__doc__)
    parser.add_argument("--loop_dir", required=True, help="a loop work dir (tsoda run/simulate)")
    parser.add_argument("--dataset_dir", required=True, help="the VOC folder with all labels")
    parser.add_argument("--round", type=int, default=1)
    args = parser.parse_args(argv)
    return run_command(lambda: _study(Path(args.loop_dir), Path(args.dataset_dir), args.round))


def _study(loop_dir: Path, dataset_dir: Path, round_number: int) -> int:
    from auto_annotate.fileio import atomic_write_text
    from tsoda.loop.journal import Journal

    pool = load_round(loop_dir / "rounds" / f"{round_number:02d}", dataset_dir)
    journal = loop_dir / "journal.sqlite"
    chosen = Journal(journal).get_meta(f"thresholds/{round_number}") if journal.is_file() \
        else None
    lines = [f"# Round {round_number}: {len(pool)} pool images, "
             f"{sum(len(p.truth.objects) for p in pool)} hidden boxes", ""]
    if chosen:
        own = Thresholds(**chosen)
        lines += [f"The round chose: {own.describe()}", "",
                  markdown_table([replay(pool, own, ignore) for ignore in (False, True)])]
    lines += ["All pairs:", "", markdown_table(grid(pool))]
    text = "\n".join(lines)
    atomic_write_text(loop_dir / "report" / f"threshold_study_round{round_number}.md", text)
    print(text)
    return 0


SCORES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def precision_by_score(detector, label_map, data_dir: Path, scores=SCORES,
                       min_ious: tuple[float, ...] = (0.5, 0.3)) -> list[dict]:
    """Per score: the detections at or above it, the share of the labelled boxes they find
    at the first IoU of ``min_ious``, and their precision at each IoU (matched as COCO does,
    one to one). The model runs once per IoU."""
    from tsoda.training.evaluate import evaluate_detector

    tables = {iou: evaluate_detector(detector, label_map, data_dir, min_iou=iou)
              for iou in min_ious}
    rows = []
    for score in scores:
        row = {"score": f">= {score:.2f}"}
        for iou, metrics in tables.items():
            hits = [hit for value, hit in metrics.score_table if value >= score]
            if "detections" not in row:
                row["detections"] = len(hits)
                row["found_share"] = f"{sum(hits) / max(metrics.scored_boxes, 1):.3f}"
            row[f"precision_iou{iou:g}"] = f"{np.mean(hits):.3f}" if hits else ""
        rows.append(row)
    return rows


def precision_main(argv: list[str] | None = None) -> int:
    """python scripts/precision_by_score.py --model_path M --label_map_path L --data_dir D"""
    import argparse

    from auto_annotate import load_detector
    from auto_annotate.console import run_command
    from auto_annotate.label_map import load_label_map

    parser = argparse.ArgumentParser(prog="precision_by_score.py",
                                     description=precision_by_score.__doc__.splitlines()[0])
    parser.add_argument("--model_path", required=True, help="SavedModel folder or .tflite")
    parser.add_argument("--label_map_path", required=True)
    parser.add_argument("--data_dir", required=True, help="images with VOC files")
    args = parser.parse_args(argv)

    def run() -> int:
        rows = precision_by_score(load_detector(args.model_path, 8),
                                  load_label_map(args.label_map_path), Path(args.data_dir))
        print(markdown_table(rows))
        return 0
    return run_command(run)
