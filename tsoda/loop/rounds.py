"""TSODA: train on the labels, label the rest, accept confident labels, retrain; repeat.

The loop is built from injected parts, so tests run it with fakes in seconds:
``trainer`` (train a round, export it), ``detector_factory`` (a SavedModel path to an
auto_annotate Detector) and ``evaluate`` (COCO metrics of a Detector on (image, XML) pairs).
All state is in the work dir's journal (tsoda/loop/journal.py); every stage is safe to repeat,
so a run killed at any moment continues where it stopped when started again.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from auto_annotate import voc
from auto_annotate.annotate import (
    Options,
    Task,
    annotate_tasks,
    plan_tasks,
    write_predefined_classes,
)
from auto_annotate.errors import AnnotateError, VocError
from auto_annotate.images import IMAGE_EXTENSIONS, list_images
from auto_annotate.label_map import LabelMap
from auto_annotate.manifest import MANIFEST_NAME, read_manifest
from auto_annotate.manifest import Status as Outcome  # of labelling one image
from auto_annotate.summary import Summary
from tsoda.data.tfrecords import write_tfrecords_for_pairs
from tsoda.errors import TrainingError
from tsoda.loop import acceptance, report
from tsoda.loop.journal import ImageRow, Journal, RoundRow, Split, Stage, Status
from tsoda.loop.settings import FIXED_SETTINGS, LoopSettings

LOG = logging.getLogger(__name__)


class Trainer(Protocol):
    initial_checkpoint: str | None

    def train(self, round_dir: Path, records: str, steps: int, warm_start: str | None,
              pseudo=None) -> str:
        """Trains one round on ``records`` (a glob), plus a tsoda.modeling.task.PseudoStream if
        given; returns the checkpoint path."""

    def export(self, round_dir: Path, checkpoint: str) -> Path:
        """Exports a checkpoint; returns the SavedModel path."""


def split_ids(ids: list[str], fraction: float, seed: int, salt: str) -> set[str]:
    """The ids that go to the test split: a seeded shuffle, round(n * fraction) of them."""
    shuffled = sorted(ids)
    random.Random(f"{seed}/{salt}").shuffle(shuffled)
    return set(shuffled[:round(len(shuffled) * fraction)])


def _no_image_problem(folder: Path) -> str:
    """Why a folder gives nothing to label: it is empty, or which formats it holds."""
    others = Counter(p.suffix.lower() or "(no suffix)" for p in folder.iterdir()
                     if p.is_file() and p.suffix.lower() not in IMAGE_EXTENSIONS | {".xml"})
    found = ", ".join(f"{count} {suffix}" for suffix, count
                      in sorted(others.items(), key=lambda item: (-item[1], item[0])))
    return (f"no image to label (supported: {' '.join(sorted(IMAGE_EXTENSIONS))}); "
            + (f"ignored: {found}" if others else "the folder is empty"))


class TsodaLoop:
    """Runs rounds until nothing is left to label, a round accepts nothing, or max_rounds."""

    def __init__(self, settings: LoopSettings, trainer: Trainer,
                 detector_factory: Callable[[Path], object], label_map: LabelMap,
                 evaluate: Callable | None = None, progress: bool = True,
                 echo: Callable[[str], None] = print,
                 after_round: Callable[[TsodaLoop, int], None] | None = None) -> None:
        from tsoda.training.evaluate import evaluate_pairs

        settings.validate()
        self.settings, self.trainer, self.label_map = settings, trainer, label_map
        self.detector_factory, self.progress, self.echo = detector_factory, progress, echo
        self.after_round = after_round  # called (again after a restart) once a round is done
        self.evaluate = evaluate or evaluate_pairs
        self.work = Path(settings.work_dir)
        self.labels_dir = self.work / "labels"
        self.journal = Journal(self.work / "journal.sqlite")
        self._detectors: dict[str, object] = {}

    # ----- set-up and reviews
    def _initialize(self) -> None:
        current = {k: str(Path(v).resolve()) if isinstance(v, Path) else v
                   for k, v in ((k, getattr(self.settings, k)) for k in FIXED_SETTINGS)}
        stored = self.journal.get_meta("settings")
        if stored is not None:
            if stored != current:
                raise ValueError(f"{self.work} was started with {stored}; now {current}: "
                                 "use a new --work_dir")
            return
        for folder in (self.settings.labeled_dir, self.settings.unlabeled_dir):
            if not Path(folder).is_dir():
                raise AnnotateError(folder, "folder does not exist")
        write_predefined_classes(self.labels_dir, self.label_map)  # for LabelImg reviews
        with self.journal.transaction():
            self._add_hand_images()
            self._add_unlabelled_images()
            self.journal.set_meta("settings", current)

    def _add_hand_images(self) -> None:
        pairs = [(p, voc.label_path(p)) for p in list_images(self.settings.labeled_dir)]
        missing = [p.name for p, xml in pairs if not xml.is_file()]
        if missing:
            self.echo(f"note: {len(missing)} images in {self.settings.labeled_dir} have no "
                      f"XML and are not used (e.g. {missing[0]})")
        pairs = [(p, xml) for p, xml in pairs if xml.is_file()]
        test = split_ids([f"L/{p.name}" for p, _ in pairs], self.settings.test_fraction,
                         self.settings.seed, "hand")
        for image, xml in pairs:
            image_id = f"L/{image.name}"
            self.journal.add_image(ImageRow(image_id, str(image), str(xml), Status.HAND,
                                            Split.TEST if image_id in test else Split.TRAIN))

    def _add_unlabelled_images(self) -> None:
        summary = Summary()
        tasks = plan_tasks(Path(self.settings.unlabeled_dir), self.labels_dir, False, summary)
        for path, reason in summary.failed:
            self.echo(f"note: {path}: {reason}; not used")
        if not tasks:
            raise AnnotateError(self.settings.unlabeled_dir,
                                _no_image_problem(Path(self.settings.unlabeled_dir)))
        for task in tasks:
            self.journal.add_image(ImageRow(f"U/{task.rel}", str(task.image), str(task.xml),
                                            Status.UNLABELLED))

    def _sync_reviews(self) -> None:
        """Verified files under the work dir become hand labels; auto labels a reviewer
        deleted go back to unlabelled."""
        with self.journal.transaction():
            for row in self.journal.images(Status.AUTO) + self.journal.images(Status.UNLABELLED):
                xml = Path(row.xml)
                if not xml.is_file():
                    if row.status == Status.AUTO:
                        self.journal.update_image(row.id, status=Status.UNLABELLED, split=None,
                                                  round=None)
                    continue
                try:
                    verified = voc.is_verified(xml)
                except VocError as error:
                    self.echo(f"note: {error}; ignored until fixed")
                    continue
                if verified:
                    test = random.Random(f"{self.settings.seed}/{row.id}").random() \
                        < self.settings.test_fraction
                    split = row.split or (Split.TEST if test else Split.TRAIN)
                    self.journal.update_image(row.id, status=Status.VERIFIED, split=split)

    # ----- the rounds
    def _pairs(self, split: Split, statuses: tuple[Status, ...]) -> list[tuple[Path, Path]]:
        return [(Path(r.image), Path(r.xml)) for status in statuses
                for r in self.journal.images(status, split)]

    def _detector(self, saved_model: str):
        """The round's detector, for the hand test (which chooses the thresholds) and for
        labelling alike, so both see the same scores (with TTA, the fused ones)."""
        if saved_model not in self._detectors:
            detector = self.detector_factory(Path(saved_model))
            if self.settings.tta:
                from auto_annotate.tta import TtaDetector

                detector = TtaDetector(detector, self.settings.tta)
            self._detectors = {saved_model: detector}
        return self._detectors[saved_model]

    def _streams(self) -> dict[str, tuple[Status, ...]]:
        """Record set name -> the statuses in it: one set, or hand and pseudo apart."""
        hand = (Status.HAND, Status.VERIFIED)
        if self.settings.pseudo_share > 0 and self._pairs(Split.TRAIN, (Status.AUTO,)):
            return {"hand": hand, "pseudo": (Status.AUTO,)}
        return {"train": (*hand, Status.AUTO)}

    def _stage_records(self, number: int, round_dir: Path, row: RoundRow) -> dict:
        streams = self._streams()
        for stale in ("train", "hand", "pseudo"):  # from an attempt with other settings
            if stale not in streams:
                for path in round_dir.glob(f"{stale}.record*"):
                    path.unlink()
        self.journal.set_meta(f"streams/{number}", self._pseudo_stream(round_dir)
                              if "pseudo" in streams else None)
        for name, statuses in streams.items():
            pairs = self._pairs(Split.TRAIN, statuses)
            if not pairs:
                raise TrainingError(self.settings.labeled_dir, "no labelled training image")
            result = write_tfrecords_for_pairs(pairs, self.label_map,
                                               round_dir / f"{name}.record")
            for image, problem in result.skipped + result.dropped_boxes:
                self.echo(f"note: round {number} records: {image}: {problem}")
            if result.examples == 0:
                raise TrainingError(None, f"round {number}: no training example: all "
                                          f"{len(pairs)} labelled training images failed to "
                                          "convert (each is named in a note above); fix their "
                                          "XML and run again")
            self.echo(f"round {number}: {result.examples} {name} images, {result.boxes} boxes")
        return {}

    def _stage_train(self, number: int, round_dir: Path, row: RoundRow) -> dict:
        previous = [r for r in self.journal.rounds() if r.round == number - 1]
        warm = previous[0].checkpoint if previous else self.trainer.initial_checkpoint
        self.echo(f"round {number}: training {row.steps} steps"
                  + (f" from {warm}" if warm else " from scratch"))
        records, pseudo = str(round_dir / "train.record*"), None
        stream = self.journal.get_meta(f"streams/{number}")
        if stream is not None:  # the records stage split the streams
            from tsoda.modeling.task import PseudoStream

            records, pseudo = str(round_dir / "hand.record*"), PseudoStream(**stream)
        return {"checkpoint": self.trainer.train(round_dir, records, row.steps, warm,
                                                 pseudo=pseudo)}

    def _pseudo_stream(self, round_dir: Path) -> dict:
        """The round's pseudo stream (tsoda.modeling.task.PseudoStream's fields), kept in the
        journal with its records, so a restart trains on what was written."""
        settings = self.settings
        return {"input_path": str(round_dir / "pseudo.record*"), "share": settings.pseudo_share,
                "weight": settings.pseudo_weight,
                "background_weight": settings.pseudo_background,
                "box_loss": settings.pseudo_box_loss, "strong_augment": settings.strong_augment}

    def _stage_export(self, number: int, round_dir: Path, row: RoundRow) -> dict:
        return {"saved_model": str(self.trainer.export(round_dir, row.checkpoint))}

    def _stage_evaluate(self, number: int, round_dir: Path, row: RoundRow) -> dict:
        detector = self._detector(row.saved_model)
        metrics = {}
        for name, statuses in (("hand", (Status.HAND,)),
                               ("auto", (Status.AUTO, Status.VERIFIED))):
            pairs = self._pairs(Split.TEST, statuses)
            if pairs:
                result = self.evaluate(detector, self.label_map, pairs)
                _refuse_model_failures(result, number, name)
                for path, reason in result.skipped:  # never scored on fewer images silently
                    self.echo(f"note: round {number} evaluation on the {name} test set: "
                              f"{path}: {reason}; not scored")
                metrics[name] = {"map50": result.map50, "map50_95": result.map50_95,
                                 "recall": result.recall, "images": result.images,
                                 "asked": len(pairs)}
                if name == "hand":  # for the round's thresholds
                    metrics[name].update(score_table=result.score_table,
                                         scored_boxes=result.scored_boxes)
        return {"metrics": metrics}

    def _stage_label(self, number: int, round_dir: Path, row: RoundRow) -> dict:
        rows = self.journal.images(Status.UNLABELLED)
        tasks = [Task(Path(r.image), r.id, round_dir / "labels" / Path(r.xml).name)
                 for r in rows]
        if tasks:  # everything down to the floor; _stage_accept applies the thresholds
            options = Options(threshold=acceptance.label_floor(self.settings),
                              progress=self.progress, model_id=row.saved_model)
            annotate_tasks(self._detector(row.saved_model), self.label_map, tasks,
                           round_dir / "labels", options)
        return {}

    def _decide(self, number: int, round_dir: Path, row: RoundRow):
        """[(image row, Decision)] for the images the round found something in."""
        manifest = read_manifest(round_dir / "labels" / MANIFEST_NAME)
        rows = [(r, manifest.get(r.id)) for r in self.journal.images(Status.UNLABELLED)]
        thresholds = acceptance.thresholds_once(self.journal, self.settings, number, row,
                                                [rec for _, rec in rows if rec], self.echo)
        decisions = []
        for image_row, record in rows:
            if record is None or record.status is not Outcome.ANNOTATED:
                continue
            found = voc.read_voc(round_dir / "labels" / Path(image_row.xml).name)
            decision = acceptance.decide(found, list(record.scores), thresholds,
                                         self.settings.ignore_regions)
            if decision.kind != "skip":
                decisions.append((image_row, decision))
        return decisions

    def _stage_accept(self, number: int, round_dir: Path, row: RoundRow) -> None:
        start = time.perf_counter()
        decisions = self._decide(number, round_dir, row)
        edited = acceptance.write_labels(self.journal, decisions)
        if edited:
            self.echo(f"note: round {number}: {len(edited)} label(s) under {self.labels_dir} "
                      f"edited by a person were kept, not replaced: {', '.join(edited)}")
        decisions = [(r, d) for r, d in decisions if r.id not in edited]
        accepted = [(r, d) for r, d in decisions if d.kind == "accept"]
        held = [(r, d) for r, d in decisions if d.kind == "hold"]
        with self.journal.transaction():
            self.journal.set_meta(f"edited/{number}", edited)
            for image_row, decision in accepted:  # every accepted image trains
                self.journal.update_image(
                    image_row.id, status=Status.AUTO, round=number, boxes=decision.labels,
                    split=Split.TRAIN, min_score=min(decision.scores),
                    max_score=max(decision.scores))
            self.journal.set_meta(f"held_back/{number}",
                                  [[r.id, max(d.scores)] for r, d in held])
            self.journal.set_meta(f"counts/{number}", self.journal.counts())
            self.journal.finish_stage(number, Stage.ACCEPT, time.perf_counter() - start,
                                      accepted=len(accepted), held_back=len(held))
        return None

    def _stage_methods(self) -> dict[Stage, Callable[[int, Path, RoundRow], dict | None]]:
        """Stage -> the method that runs it; it returns the fields to record (None: it
        recorded its own finish)."""
        return {Stage.RECORDS: self._stage_records, Stage.TRAIN: self._stage_train,
                Stage.EXPORT: self._stage_export, Stage.EVALUATE: self._stage_evaluate,
                Stage.LABEL: self._stage_label, Stage.ACCEPT: self._stage_accept}

    def _run_round(self, number: int) -> None:
        round_dir = self.work / "rounds" / f"{number:02d}"
        round_dir.mkdir(parents=True, exist_ok=True)
        methods = self._stage_methods()
        while True:
            row = next(r for r in self.journal.rounds() if r.round == number)
            if row.done:
                return
            stage, start = row.next_stage, time.perf_counter()
            fields = methods[stage](number, round_dir, row)
            if fields is not None:
                self.journal.finish_stage(number, stage, time.perf_counter() - start, **fields)

    def _stop_reason(self) -> str | None:
        done = [r for r in self.journal.rounds() if r.done]
        if not done:
            return None
        if self.settings.max_rounds is not None and len(done) >= self.settings.max_rounds:
            return f"reached --max_rounds {self.settings.max_rounds}"
        if self.journal.counts()[Status.UNLABELLED] == 0:
            return "no unlabelled image is left"
        if done[-1].accepted == 0:
            return f"round {done[-1].round} accepted nothing new"
        return None

    def run(self) -> str:
        """Runs (or continues) the loop; returns why it stopped."""
        self._initialize()
        while True:
            done = [r.round for r in self.journal.rounds() if r.done]
            if done and self.after_round is not None:
                self.after_round(self, done[-1])
            self._sync_reviews()
            unfinished = [r for r in self.journal.rounds() if not r.done]
            if unfinished:
                number = unfinished[0].round
            else:
                reason = self._stop_reason()
                if reason is not None:
                    self.echo(f"stopped: {reason}")
                    report.write_report(self.journal, self.work / "report", self.echo)
                    return reason
                number = len(self.journal.rounds()) + 1
                self.journal.start_round(number, self.settings.steps_for(number))
            self._run_round(number)
            self._sync_reviews()
            line = report.write_report(self.journal, self.work / "report")
            self.echo(line)


def _refuse_model_failures(result, number: int, name: str) -> None:
    """Stops the round when the model failed on a test image (its call raised, or its
    output was not finite): the stage is not recorded, so running again retries it, and no
    threshold is chosen from a score on fewer images. Unreadable files are only noted."""
    if result.model_failed:
        path, reason = result.model_failed[0]
        raise TrainingError(path, f"round {number}: evaluation on the {name} test set "
                                  f"failed ({reason}; {len(result.model_failed)} image(s)); "
                                  "run again to retry it")
