"""``tsoda simulate``: what the loop is worth, measured on a fully labelled VOC folder.

For each seed, a seeded random fraction of the images keeps its labels (the hand labels);
the others are offered to the loop as unlabelled, their labels hidden. After the loop, each
round's labels are scored against the hidden truth over the whole unlabelled pool (see
tsoda/simulation/effort.py), each round's model is evaluated on the test folder, and baselines are
trained on the same schedule (the loop's per-round steps, each round warm-started from the one
before): the hand images the loop trained on, and all labels (the same images with the hidden
labels revealed). With a review budget, a simulated person verifies the first K images of each
round's review queue, and a "person alone" baseline gets as many randomly chosen images.

Work dir layout: ``seed<S>/split`` (links into the dataset), ``seed<S>/loop-<key>`` (one
loop per loop setting, so runs with other settings share the rest) and
``seed<S>/baselines/<name>-<key>`` (cached: reused by every later run with the same
config, schedule, images and seed), ``seed<S>/first_stages`` (the training that the loop's
first round and the hand-only baseline's first stage share under every setting: see
tsoda/simulation/stages.py). A training that diverges is recorded in its folder
(``diverged.json``) and reported as such; the rest of the experiment goes on. Delete that
file to try the training again. The user's folders are only read.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import statistics
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path

from auto_annotate import voc
from auto_annotate.errors import AnnotateError
from auto_annotate.fileio import atomic_write_text
from tsoda.errors import DivergedError
from tsoda.loop.journal import Split, Status
from tsoda.loop.report import markdown_table, review_queue, to_csv
from tsoda.loop.rounds import TsodaLoop, split_ids
from tsoda.loop.settings import LoopSettings
from tsoda.simulation import BASELINES
from tsoda.simulation.effort import Effort, image_effort, match_boxes  # noqa: F401 (re-export)
from tsoda.simulation.stages import DIVERGED, SharedFirstStage, mark_diverged, trainer_fingerprint

NUMERIC = ("test_map50", "test_map50_95", "label_precision", "label_recall",
           "labelled_share", "edits_per_box", "false_background", "minutes")


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
            _link(voc.label_path(image), voc.label_path(image.name, out / "L"))
        else:
            _link(image, out / "U" / image.name)
    return out / "L", out / "U"


@dataclass(frozen=True)
class Simulation:
    """Everything ``simulate`` needs besides the loop settings."""

    dataset_dir: Path
    labeled_fraction: float
    test_dir: Path | None
    seeds: tuple[int, ...] = (0,)
    review_budget: int = 0
    baselines: tuple[str, ...] = BASELINES  # which of BASELINES to train


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _setting(settings: LoopSettings) -> dict:
    """The loop settings that identify a loop's results: those not at their default (so a
    new setting with a default keeps earlier work dirs valid), without the work dir."""
    return {f.name: str(getattr(settings, f.name)) for f in fields(settings)
            if f.name != "work_dir" and (f.default is MISSING
                                         or getattr(settings, f.name) != f.default)}


def _check_split(folder: Path, simulation: Simulation, seed: int) -> None:
    """A seed's split is made once; a work dir reused with other data is refused."""
    made = {"dataset_dir": str(Path(simulation.dataset_dir).resolve()),
            "labeled_fraction": simulation.labeled_fraction, "seed": seed}
    record = folder / "split.json"
    if record.is_file():
        stored = json.loads(record.read_text())
        if stored != made:
            raise AnnotateError(folder, f"was made with {stored}; now {made}: use another "
                                        "--work_dir")
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps(made))


class _Seed:
    """One seed's comparison: the loop, its label effort, and the baselines."""

    def __init__(self, settings: LoopSettings, simulation: Simulation, seed: int, parts):
        self.simulation, self.seed = simulation, seed
        trainer, self.detector_factory, self.label_map, self.evaluate, self.echo = parts
        self.folder = Path(settings.work_dir).resolve() / f"seed{seed}"
        self.trainer = SharedFirstStage(trainer, self.folder / "first_stages", self.echo)
        _check_split(self.folder / "split", simulation, seed)
        labeled, unlabeled = make_split(simulation.dataset_dir, self.folder / "split",
                                        simulation.labeled_fraction, seed)
        loop_settings = replace(settings, labeled_dir=labeled, unlabeled_dir=unlabeled, seed=seed)
        key = _key(_setting(loop_settings), simulation.review_budget,
                   trainer_fingerprint(self.trainer))
        self.settings = replace(loop_settings, work_dir=self.folder / f"loop-{key}")

    def truth(self, image_id: str) -> voc.VocAnnotation:
        return voc.read_voc(voc.label_path(Path(image_id).name, self.simulation.dataset_dir))

    def test_pairs(self, loop: TsodaLoop) -> list[tuple[Path, Path]]:
        if self.simulation.test_dir:
            return voc.voc_pairs(self.simulation.test_dir)
        return loop._pairs(Split.TEST, (Status.HAND,))

    def score(self, saved_model, test_pairs) -> dict:
        if not test_pairs:
            return {"test_map50": "", "test_map50_95": ""}
        metrics = self.evaluate(self.detector_factory(Path(saved_model)), self.label_map,
                                test_pairs)
        return {"test_map50": f"{metrics.map50:.4f}", "test_map50_95": f"{metrics.map50_95:.4f}"}

    # ----- the loop
    def run_loop(self, progress: bool) -> TsodaLoop:
        loop = TsodaLoop(self.settings, self.trainer, self.detector_factory, self.label_map,
                         self.evaluate, progress, self.echo,
                         after_round=_RoundEnd(self, self.simulation.review_budget))
        marker = self.settings.work_dir / DIVERGED
        if not marker.is_file():
            try:
                loop.run()
            except DivergedError as error:
                mark_diverged(self.settings.work_dir, error)
                self.echo(f"seed {self.seed}: the loop diverged: {error}")
        return loop

    def round_effort(self, loop: TsodaLoop, number: int) -> dict:
        """The pool as round ``number`` left it, before the simulated person reviews its
        queue: kept in the journal, so later reviews cannot rewrite it."""
        key = f"simulate/effort/{number}"
        stored = loop.journal.get_meta(key)
        if stored is None:
            pool = loop.journal.images(Status.AUTO) + loop.journal.images(Status.UNLABELLED) \
                + [r for r in loop.journal.images(Status.VERIFIED) if r.id.startswith("U/")]
            reviewed = _reviewed(loop)(number - 1)
            effort, quality = self.effort(pool, number, reviewed)
            stored = {**quality, **_effort_columns(effort), "reviewed": len(reviewed)}
            loop.journal.set_meta(key, stored)
        return stored

    def loop_rows(self, loop: TsodaLoop, test_pairs) -> list[dict]:
        rows, total = [], 0
        for r in loop.journal.rounds():
            total += r.steps
            row = {"seed": self.seed, "run": f"loop round {r.round}", "steps": total,
                   "accepted": r.accepted if r.done else "", "reviewed": ""}
            if not r.done:
                rows.append({**row, "note": _diverged_note(self.settings.work_dir)})
                continue
            key = f"simulate/score/{r.round}/{_key([str(p) for p, _ in test_pairs])}"
            score = loop.journal.get_meta(key)
            if score is None:  # scored once; later runs of the same loop reuse it
                score = self.score(r.saved_model, test_pairs)
                loop.journal.set_meta(key, score)
            rows.append({**row, **self.round_effort(loop, r.round), **score,
                         "minutes": f"{r.seconds / 60:.1f}", "note": ""})
        done = [row for row in rows if row["note"] == ""]
        if done:  # seeds may stop after different rounds: their last models side by side
            rows.append({**done[-1], "run": "loop final", "note": rows[-1]["note"]})
        return rows

    def effort(self, pool, number: int, reviewed: set[str]) -> tuple[Effort, dict]:
        """The pool after round ``number``: labels of rounds <= number; reviewed images done."""
        effort, accepted = Effort(), Effort()
        for row in pool:
            truth = self.truth(row.id)
            if row.id in reviewed:
                effort.add(Effort(hidden=len(truth.objects), labelled=len(truth.objects)))
                continue
            labelled = row.status == Status.AUTO and row.round is not None and row.round <= number
            image = image_effort(voc.read_voc(row.xml) if labelled else None, truth)
            effort.add(image)
            if labelled:
                accepted.add(image)
        precision = accepted.labelled / accepted.labels if accepted.labels else 0.0
        recall = accepted.labelled / accepted.hidden if accepted.hidden else 0.0
        return effort, {"label_precision": f"{precision:.3f}", "label_recall": f"{recall:.3f}"}

    # ----- the baselines
    def baseline(self, name: str, pairs, schedule: list[int], test_pairs) -> dict:
        images = sorted(str(image) for image, _ in pairs)
        folder = self.folder / "baselines" / \
            f"{name}-{_key(trainer_fingerprint(self.trainer), schedule, images, self.seed)}"
        row = {"seed": self.seed, "run": f"baseline {name}", "steps": sum(schedule),
               "accepted": len(pairs), "reviewed": "", "note": ""}
        scored = folder / f"result-{_key([str(p) for p, _ in test_pairs])}.json"
        if scored.is_file():  # trained and scored on this test set before
            return {**row, **json.loads(scored.read_text())}
        if (folder / DIVERGED).is_file():
            return {**row, "note": _diverged_note(folder)}
        try:
            saved_model = self._train_chain(folder, pairs, schedule)
        except DivergedError as error:
            mark_diverged(folder, error)
            self.echo(f"seed {self.seed}: baseline {name} diverged: {error}")
            return {**row, "note": _diverged_note(folder)}
        result = self.score(saved_model, test_pairs)
        atomic_write_text(scored, json.dumps(result))
        return {**row, **result}

    def _train_chain(self, folder: Path, pairs, schedule: list[int]) -> Path:
        """The loop's schedule without its labels: stage k warm-starts from stage k - 1."""
        from tsoda.data.tfrecords import write_tfrecords_for_pairs

        exported = folder / "exported.json"
        if exported.is_file():
            return Path(json.loads(exported.read_text())["saved_model"])
        folder.mkdir(parents=True, exist_ok=True)
        if not list(folder.glob("train.record*")):
            write_tfrecords_for_pairs(pairs, self.label_map, folder / "train.record")
        checkpoint, stage = self.trainer.initial_checkpoint, folder
        for number, steps in enumerate(schedule, 1):
            stage = folder / f"stage{number}"
            stage.mkdir(exist_ok=True)
            checkpoint = self.trainer.train(stage, str(folder / "train.record*"), steps,
                                            checkpoint)
        saved_model = self.trainer.export(stage, checkpoint)
        atomic_write_text(exported, json.dumps({"saved_model": str(saved_model)}))
        return Path(saved_model)

    def baselines(self, loop: TsodaLoop, test_pairs) -> list[dict]:
        schedule = [r.steps for r in loop.journal.rounds()]
        if not schedule:
            return []
        hand = loop._pairs(Split.TRAIN, (Status.HAND,))
        held_out = {Path(image).name for image, _ in loop._pairs(Split.TEST, (Status.HAND,))}
        everything = [(image, xml) for image, xml in voc.voc_pairs(self.simulation.dataset_dir)
                      if image.name not in held_out]
        runs = [(name, pairs) for name, pairs in (("hand_only", hand), ("all_labels", everything))
                if name in self.simulation.baselines]
        reviewed = len(_reviewed(loop)(len(schedule) - 1))  # what the last model trained on
        if reviewed:
            pool = sorted(r.id for r in loop.journal.images() if r.id.startswith("U/"))
            chosen = random.Random(f"{self.seed}/person").sample(pool, min(reviewed, len(pool)))
            extra = [(self.simulation.dataset_dir / Path(i).name,
                      voc.label_path(Path(i).name, self.simulation.dataset_dir)) for i in chosen]
            runs.append(("person_alone", hand + extra))
        return [self.baseline(name, pairs, schedule, test_pairs) for name, pairs in runs]


def _effort_columns(effort: Effort) -> dict:
    return {"labelled_share": f"{effort.labelled_share:.3f}",
            "edits_per_box": f"{effort.edits_per_box:.3f}",
            "false_background": f"{effort.false_background_rate:.3f}"}


def _diverged_note(folder: Path) -> str:
    marker = Path(folder) / DIVERGED
    if not marker.is_file():
        return "unfinished"
    return f"diverged at step {json.loads(marker.read_text())['step']}"


def _reviewed(loop: TsodaLoop):
    """round -> the image ids the simulated person reviewed in rounds <= round."""
    def upto(number: int) -> set[str]:
        return {i for n in range(1, number + 1)
                for i in loop.journal.get_meta(f"reviewed/{n}") or []}
    return upto


class _RoundEnd:
    """After each round: the pool's effort is recorded; then a simulated person (with a
    review budget K) verifies the first K images of the review queue by writing their
    hidden labels as verified LabelImg files."""

    def __init__(self, seed: _Seed, budget: int) -> None:
        self.seed, self.budget = seed, budget

    def __call__(self, loop: TsodaLoop, number: int) -> None:
        self.seed.round_effort(loop, number)
        key = f"reviewed/{number}"
        if not self.budget or loop.journal.get_meta(key) is not None:
            return
        rows = {r.id: r for r in loop.journal.images()}
        chosen = [q["image"] for q in review_queue(loop.journal)
                  if rows[q["image"]].status in (Status.AUTO, Status.UNLABELLED)][:self.budget]
        for image_id in chosen:
            truth = self.seed.truth(image_id)
            voc.write_voc(rows[image_id].xml, replace(truth, verified=True))
        loop.journal.set_meta(key, chosen)


def simulate(settings: LoopSettings, simulation: Simulation, trainer, detector_factory,
             label_map, evaluate=None, progress: bool = True, echo=print) -> list[dict]:
    """Runs the comparison for every seed; writes and prints the per-seed and summary tables.

    Returns the per-seed rows (the summary is derived from them by :func:`summarize`).
    """
    from tsoda.training.evaluate import evaluate_pairs

    parts = (trainer, detector_factory, label_map, evaluate or evaluate_pairs, echo)
    rows = []
    for seed in simulation.seeds:
        one = _Seed(settings, simulation, seed, parts)
        loop = one.run_loop(progress)
        test_pairs = one.test_pairs(loop)
        seed_rows = one.loop_rows(loop, test_pairs) + one.baselines(loop, test_pairs)
        _write_table(seed_rows, one.settings.work_dir / "report" / "simulate")
        rows += seed_rows
    summary = summarize(rows)
    report = Path(settings.work_dir) / "report"
    setting = {k: str(v) for k, v in settings.__dict__.items()
               if k not in ("labeled_dir", "unlabeled_dir", "work_dir", "seed")}
    setting.update(review_budget=simulation.review_budget, seeds=list(simulation.seeds))
    for folder in (report, report / f"setting-{_key(setting, trainer_fingerprint(trainer))}"):
        _write_table(rows, folder / "simulate_runs")  # latest run; and one per setting
        _write_table(summary, folder / "simulate")
        atomic_write_text(folder / "setting.json", json.dumps(setting, indent=2) + "\n")
    for line in markdown_table(summary).splitlines():
        echo(line)
    return rows


def _mean_sd(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def summarize(rows: list[dict]) -> list[dict]:
    """One row per run name: mean ± sd over the seeds that finished it, and how many did."""
    names = list(dict.fromkeys(row["run"] for row in rows))
    seeds = len({row["seed"] for row in rows})
    summary = []
    for name in names:
        group = [row for row in rows if row["run"] == name]
        finished = [row for row in group if row.get("test_map50", "") != "" or
                    row.get("label_precision", "") != ""]
        out = {"run": name, "seeds": f"{len(finished)}/{seeds}",
               "steps": group[0]["steps"] if len({r["steps"] for r in group}) == 1 else
               "/".join(str(r["steps"]) for r in group)}
        for column in NUMERIC:
            out[column] = _mean_sd([float(row[column]) for row in finished
                                    if row.get(column, "") != ""])
        notes = sorted({f"seed {row['seed']}: {row['note']}" for row in group if row.get("note")})
        out["note"] = "; ".join(notes)
        summary.append(out)
    return summary


def _write_table(rows: list[dict], stem: Path) -> None:
    columns = list(dict.fromkeys(c for row in rows for c in row))
    atomic_write_text(stem.with_suffix(".md"), markdown_table(rows))
    atomic_write_text(stem.with_suffix(".csv"),
                      to_csv([{c: row.get(c, "") for c in columns} for row in rows], columns))
