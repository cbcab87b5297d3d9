"""Fakes for the TSODA loop: a trainer that writes marker files, and colour detectors
whose confidence grows with the round, so several rounds happen in a second."""

from __future__ import annotations

import glob
import json
import time
from pathlib import Path

from auto_annotate import voc
from auto_annotate.detections import Detections
from tests.helpers import BLUE, RED, FakeColorDetector, draw, save

# round -> {colour: (class id, score)}; blue is uncertain in round 1, confident later
SCORES = {1: {RED: (1, 0.95), BLUE: (2, 0.7)}, 2: {RED: (1, 0.95), BLUE: (2, 0.95)}}


class FakeTrainer:
    """Records its calls in ``log`` (a JSON-lines file, so a killed process keeps them)."""

    initial_checkpoint = None

    def __init__(self, log: Path, sleep_in: str | None = None, fail_once: str | None = None):
        self.log, self.sleep_in, self.fail_once = Path(log), sleep_in, fail_once

    def _note(self, **entry) -> None:
        with self.log.open("a") as stream:
            stream.write(json.dumps(entry) + "\n")

    def _maybe_stop(self, stage: str, round_dir: Path) -> None:
        if self.sleep_in == stage:
            (round_dir / f"in_{stage}").write_text("")
            time.sleep(60)
        if self.fail_once == stage:
            self.fail_once = None
            raise KeyboardInterrupt(f"simulated crash in {stage}")

    def train(self, round_dir, records, steps, warm_start, pseudo=None):
        assert glob.glob(records), "records missing"
        self._maybe_stop("train", Path(round_dir))
        checkpoint = Path(round_dir) / "model" / "ckpt"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_text(str(steps))
        self._note(call="train", round_dir=str(round_dir), steps=steps, warm_start=warm_start,
                   records=records, pseudo=None if pseudo is None else pseudo.__dict__)
        return str(checkpoint)

    def export(self, round_dir, checkpoint):
        self._maybe_stop("export", Path(round_dir))
        saved = Path(round_dir) / "export" / "saved_model"
        saved.mkdir(parents=True, exist_ok=True)
        self._note(call="export", round_dir=str(round_dir))
        return saved

    def calls(self) -> list[dict]:
        return [json.loads(line) for line in self.log.open()] if self.log.exists() else []


class RoundDetector(FakeColorDetector):
    """Finds colour patches with the scores of its round (from the SavedModel's path)."""

    def __init__(self, saved_model: Path, sleep_in_label: Path | None = None):
        super().__init__(max_batch=2)
        name = Path(saved_model).parts[-3]  # rounds/NN/export/saved_model, or a baseline
        number = int(name) if name.isdigit() else max(SCORES)
        self.scores = SCORES[min(number, max(SCORES))]
        self.sleep_marker = sleep_in_label

    def predict(self, images):
        if self.sleep_marker is not None and self.batches:
            self.sleep_marker.write_text("")
            time.sleep(60)
        found = super().predict(images)
        results = []
        for image, detections in zip(images, found, strict=True):
            keep = [i for i, c in enumerate(detections.class_ids) if c in (1, 2)]
            scores = [self._score(image, detections.boxes[i]) for i in keep]
            results.append(Detections(detections.boxes[keep], scores,
                                      detections.class_ids[keep]))
        return results

    def _score(self, image, box):
        x0, y0 = int(box[0]), int(box[1])
        return self.scores[tuple(int(v) for v in image[y0, x0])][1]


def make_dataset(root: Path) -> tuple[Path, Path]:
    """L: 5 hand-labelled red images. U: 4 red, 2 red+blue, 2 blue, 1 empty."""
    labeled, unlabeled = root / "L", root / "U"
    for index in range(5):
        save(labeled / f"hand{index}.png", draw((64, 48), [(RED, (5 + index, 5, 30, 30))]))
        voc.write_voc(labeled / f"hand{index}.xml", voc.VocAnnotation(
            f"hand{index}.png", 64, 48,
            objects=(voc.VocObject("flame", (5.0 + index, 5.0, 30.0, 30.0)),), verified=True))
    layouts = {f"red{i}": [(RED, (i, 2, 20 + i, 20))] for i in range(4)}
    layouts |= {f"mixed{i}": [(RED, (2, 2, 20, 20)), (BLUE, (30 + i, 20, 50, 40))]
                for i in range(2)}
    layouts |= {f"blue{i}": [(BLUE, (10 + i, 10, 40, 40))] for i in range(2)}
    layouts |= {"empty": []}
    for name, rects in layouts.items():
        save(unlabeled / f"{name}.png", draw((64, 48), rects))
    return labeled, unlabeled
