"""What a round keeps of its detections: thresholds, then one decision per image.

Every detection at or above the round's ``accept`` threshold is a label. Detections in the
uncertain band [uncertain, accept) are, with ignore regions on (the default), written as
``difficult`` objects: LabelImg shows them, and training leaves their area out of the loss
(tsoda/modeling/ignore_regions.py) instead of teaching that a probable flame is background. An image
is accepted when it has a label; an image with only uncertain detections is held back for
review, its detections written as suggestions (``difficult`` objects that count for nothing
until a person verifies the file). With ignore regions off, an image with any uncertain
detection is held back, as the loop did before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from auto_annotate import voc
from auto_annotate.errors import AnnotateError
from auto_annotate.fileio import atomic_write_bytes, sha256_of_file
from auto_annotate.manifest import ManifestRecord
from auto_annotate.manifest import Status as Outcome  # of labelling one image
from tsoda.loop import thresholds as choose
from tsoda.loop.journal import Split, Status

LABEL_FLOOR = 0.05  # the labelling stage keeps detections down to this score


@dataclass(frozen=True)
class Decision:
    """``kind``: "accept", "hold" or "skip"; ``annotation``: what to write for it."""

    kind: str
    annotation: voc.VocAnnotation | None = None
    labels: int = 0
    scores: tuple[float, ...] = ()  # of the labels (held back: of the suggestions)


def label_floor(settings) -> float:
    fixed = [v for v in (settings.threshold, settings.uncertain_threshold) if v is not None]
    return min([LABEL_FLOOR, *fixed])


def round_thresholds(settings, hand_metrics: dict | None, pool_scores: list[list[float]],
                     boxes_per_image: float) -> choose.Thresholds:
    """The round's thresholds: fixed ones as given, the others chosen from data."""
    hand_metrics = hand_metrics or {}
    chosen = choose.from_hand_test(
        [tuple(row) for row in hand_metrics.get("score_table", [])],
        hand_metrics.get("scored_boxes", 0), settings.target_precision,
        settings.target_recall, settings.min_holdout_boxes)
    if chosen is None:
        boxes = hand_metrics.get("scored_boxes", 0)
        why = f"the hand test has {boxes} boxes, fewer than {settings.min_holdout_boxes}" \
            if boxes < settings.min_holdout_boxes else \
            f"the model found none of the {boxes} hand test boxes"
        chosen = choose.from_count_prior(pool_scores, boxes_per_image, why)
    accept = chosen.accept if settings.threshold is None else settings.threshold
    uncertain = chosen.uncertain if settings.uncertain_threshold is None \
        else settings.uncertain_threshold
    if settings.threshold is not None and settings.uncertain_threshold is not None:
        return choose.fixed(accept, uncertain)
    source = chosen.source if settings.threshold is None else \
        f"--threshold fixed; uncertain from {chosen.source}"
    return replace(chosen, accept=accept, uncertain=min(uncertain, accept), source=source)


def decide(annotation: voc.VocAnnotation, scores: list[float], thresholds: choose.Thresholds,
           ignore_regions: bool) -> Decision:
    """One image's decision from its labelled-at-the-floor annotation and the boxes' scores."""
    if len(annotation.objects) != len(scores):
        raise ValueError(f"{annotation.filename}: {len(annotation.objects)} boxes but "
                         f"{len(scores)} scores in the manifest")
    labels = [(o, s) for o, s in zip(annotation.objects, scores, strict=True)
              if s >= thresholds.accept]
    band = [replace(o, difficult=True) for o, s in zip(annotation.objects, scores, strict=True)
            if thresholds.uncertain <= s < thresholds.accept]
    if labels and (ignore_regions or not band):
        objects = tuple(o for o, _ in labels) + (tuple(band) if ignore_regions else ())
        return Decision("accept", replace(annotation, objects=objects), len(labels),
                        tuple(s for _, s in labels))
    if labels or band:
        suggestions = tuple(replace(o, difficult=True) for o, _ in labels) + tuple(band)
        return Decision("hold", replace(annotation, objects=suggestions),
                        scores=tuple(s for s in scores if s >= thresholds.uncertain))
    return Decision("skip")


def hand_boxes_per_image(journal) -> float:
    """Boxes per hand training image (ignore regions left out): the count prior."""
    counts = []
    for image_row in journal.images(Status.HAND, Split.TRAIN):
        try:
            counts.append(sum(not o.difficult for o in voc.read_voc(image_row.xml).objects))
        except AnnotateError:
            continue
    return sum(counts) / len(counts) if counts else 1.0


def thresholds_once(journal, settings, number: int, row, records: list[ManifestRecord], echo):
    """The round's thresholds, chosen once and kept in the journal (and said); ``records``:
    the pool's manifest records, whose scores the count prior uses."""
    stored = journal.get_meta(f"thresholds/{number}")
    if stored is not None:
        return choose.Thresholds(**stored)
    chosen = round_thresholds(
        settings, row.metrics.get("hand"),
        [list(r.scores) for r in records if r.status is not Outcome.FAILED],
        hand_boxes_per_image(journal))
    journal.set_meta(f"thresholds/{number}", chosen.as_dict())
    echo(f"round {number}: {chosen.describe()}")
    return chosen


def write_labels(journal, decisions) -> list[str]:
    """Writes each decision's file under W/labels (repeating this is harmless). A file there
    that is not the one the loop wrote (its SHA-256 is kept in the journal) is a person's
    work, saved or verified: never replaced, its image not accepted.

    Returns:
        The ids of the images whose file a person edited.
    """
    edited = []
    for image_row, decision in decisions:
        target, key = Path(image_row.xml), f"label_sha256/{image_row.id}"
        data = voc.annotation_to_xml(decision.annotation).encode("utf-8")
        digest = hashlib.sha256(data).hexdigest()
        # ours: the file written before, or this very file (a repeat after a crash that
        # came between writing it and recording its hash)
        if target.is_file() and sha256_of_file(target) not in (journal.get_meta(key), digest):
            edited.append(image_row.id)
            continue
        atomic_write_bytes(target, data)
        journal.set_meta(key, digest)
    return edited
