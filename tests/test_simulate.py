"""tsoda simulate with fakes: the split, label quality and effort against hidden truth,
fair cached baselines, seeds, divergence and the simulated reviewer."""

from __future__ import annotations

from pathlib import Path

import pytest

from auto_annotate import voc
from auto_annotate.errors import AnnotateError
from auto_annotate.label_map import parse_label_map
from tests.helpers import BLUE, LABEL_MAP, RED, draw, save
from tests.loop_fakes import FakeTrainer, RoundDetector
from tsoda.errors import DivergedError
from tsoda.loop.rounds import LoopSettings
from tsoda.simulation.effort import image_effort
from tsoda.simulation.simulate import Simulation, make_split, match_boxes, simulate, summarize

LABELS = parse_label_map(LABEL_MAP)


def labelled_set(folder: Path, count: int, shift: int = 0) -> Path:
    for index in range(count):
        color, name = (RED, "flame") if index % 3 else (BLUE, "smoke")
        box = (4 + index % 5, 6, 30 + index % 5 + shift, 30)  # the truth is off by `shift`
        save(folder / f"img{index:02d}.png", draw((64, 48), [(color, box[:2] + (box[2] - shift,
                                                                               box[3]))]))
        voc.write_voc(folder / f"img{index:02d}.xml", voc.VocAnnotation(
            f"img{index:02d}.png", 64, 48,
            objects=(voc.VocObject(name, tuple(float(v) for v in box)),)))
    return folder


def test_split_links_a_seeded_fraction_and_hides_the_rest(tmp_path):
    data = labelled_set(tmp_path / "D", 20)
    before = sorted(p.name for p in data.iterdir())
    labeled, unlabeled = make_split(data, tmp_path / "split", 0.25, seed=5)
    assert len(list(labeled.glob("*.png"))) == 5 and len(list(labeled.glob("*.xml"))) == 5
    assert len(list(unlabeled.glob("*.png"))) == 15 and not list(unlabeled.glob("*.xml"))
    assert sorted(p.name for p in data.iterdir()) == before


def test_match_boxes_is_one_to_one_at_iou_half():
    truth = voc.VocAnnotation("a", 100, 100, objects=(
        voc.VocObject("flame", (0, 0, 10, 10)), voc.VocObject("flame", (50, 50, 60, 60))))
    predicted = voc.VocAnnotation("a", 100, 100, objects=(
        voc.VocObject("flame", (0, 0, 10, 11)), voc.VocObject("flame", (0, 0, 10, 10)),
        voc.VocObject("smoke", (50, 50, 60, 60)), voc.VocObject("flame", (55, 55, 65, 65))))
    assert match_boxes(predicted, truth) == 1


def _settings(work: Path, **changes) -> LoopSettings:
    values = dict(labeled_dir=work / "split" / "L", unlabeled_dir=work / "split" / "U",
                  work_dir=work, threshold=0.9, uncertain_threshold=0.5,
                  ignore_regions=False, initial_steps=10, step_increment=5,
                  max_steps=100, test_fraction=0.0, seed=0)
    return LoopSettings(**{**values, **changes})


def _run(tmp_path, trainer, settings=None, **simulation):
    data = tmp_path / "D" if (tmp_path / "D").is_dir() else labelled_set(tmp_path / "D", 12,
                                                                          shift=4)
    test = tmp_path / "T" if (tmp_path / "T").is_dir() else labelled_set(tmp_path / "T", 4)
    options = {"seeds": (2,), **simulation}
    return simulate(settings or _settings(tmp_path / "W"),
                    Simulation(data, 0.25, test, **options), trainer, RoundDetector, LABELS,
                    progress=False, echo=lambda line: None)


def _trained(trainer, kind: str) -> list[tuple[str, int, bool]]:
    """(stage folder, steps, warm-started) of the trainer's calls for one baseline kind."""
    return [(Path(c["round_dir"]).name, c["steps"], c["warm_start"] is not None)
            for c in trainer.calls() if c["call"] == "train" and f"/{kind}-" in c["round_dir"]]


def _warm_starts(trainer, kind: str) -> list[str]:
    """The warm starts of the trainer's calls for one kind that were warm-started."""
    return [c["warm_start"] for c in trainer.calls()
            if c["call"] == "train" and f"/{kind}-" in c["round_dir"] and c["warm_start"]]


def test_simulation_reports_rounds_and_baselines_on_the_loops_schedule(tmp_path):
    trainer = FakeTrainer(tmp_path / "calls.jsonl")
    rows = _run(tmp_path, trainer)
    loop_rows = [r for r in rows if r["run"].startswith("loop round")]
    assert [r["accepted"] for r in loop_rows] == [6, 3]  # red first, blue in round 2
    assert loop_rows[0]["label_precision"] == "1.000"  # IoU 26/30 >= 0.5: still a match
    assert [r["steps"] for r in rows] == [10, 25, 25, 25, 25]  # baselines get the total
    # the same schedule shape: 10 steps, then 15 warm-started from them; first stages are
    # trained in first_stages/, and the hand-only baseline's is the loop's first round
    firsts = _trained(trainer, "first_stages/stage")
    assert [first[1:] for first in firsts] == [(10, False), (10, False)]  # loop, all labels
    assert _trained(trainer, "hand_only") == _trained(trainer, "all_labels") == \
        [("stage2", 15, True)]
    stages = tmp_path / "W" / "seed2" / "first_stages"
    assert _warm_starts(trainer, "hand_only") == [_warm_starts(trainer, "loop")[0]] == \
        [str(stages / firsts[0][0] / "model" / "ckpt")]
    assert _warm_starts(trainer, "all_labels") == [str(stages / firsts[1][0] / "model" / "ckpt")]
    assert float(rows[-1]["test_map50"]) == pytest.approx(1.0)  # the fake finds every patch
    report = (tmp_path / "W" / "report" / "simulate.md").read_text()
    assert "| baseline hand_only | 1/1 | 25 |" in report
    [kept] = (tmp_path / "W" / "report").glob("setting-*/simulate.md")  # one per setting
    assert kept.read_text() == report
    assert '"threshold": "0.9"' in (kept.parent / "setting.json").read_text()


def test_effort_over_the_pool_after_each_round(tmp_path):
    rows = _run(tmp_path, FakeTrainer(tmp_path / "calls.jsonl"))
    first, second = [r for r in rows if r["run"].startswith("loop round")]
    # 9 hidden images, one box each: 6 red ones labelled in round 1, 3 blue ones in round 2
    assert first["labelled_share"] == f"{6 / 9:.3f}" and first["edits_per_box"] == f"{3 / 9:.3f}"
    assert second["labelled_share"] == "1.000" and second["edits_per_box"] == "0.000"
    assert first["false_background"] == "0.000"


def test_the_hand_only_baseline_trains_on_exactly_the_loops_hand_training_images(tmp_path):
    import tensorflow as tf

    trainer = FakeTrainer(tmp_path / "calls.jsonl")
    data = labelled_set(tmp_path / "D", 20)
    _run(tmp_path, trainer, _settings(tmp_path / "W", test_fraction=0.4))
    loop_dir = next((tmp_path / "W" / "seed2").glob("loop-*"))
    from tsoda.loop.journal import Journal
    journal = Journal(loop_dir / "journal.sqlite")
    hand_train = {Path(r.image).name for r in journal.images("hand", "train")}
    hand_test = {Path(r.image).name for r in journal.images("hand", "test")}
    assert len(hand_train) == 3 and len(hand_test) == 2
    records = next((tmp_path / "W" / "seed2" / "baselines").glob("hand_only-*"))
    names = {tf.train.Example.FromString(raw.numpy()).features.feature["image/filename"]
             .bytes_list.value[0].decode() for raw in tf.data.TFRecordDataset(
                 [str(p) for p in records.glob("train.record*")])}
    assert names == hand_train
    everything = next((tmp_path / "W" / "seed2" / "baselines").glob("all_labels-*"))
    count = sum(1 for _ in tf.data.TFRecordDataset([str(p) for p in
                                                      everything.glob("train.record*")]))
    assert count == len(list(data.glob("*.xml"))) - len(hand_test)


def test_baselines_are_cached_and_reused_by_runs_with_other_loop_settings(tmp_path):
    trainer = FakeTrainer(tmp_path / "calls.jsonl")
    _run(tmp_path, trainer)
    baseline_calls = len(_trained(trainer, "hand_only") + _trained(trainer, "all_labels"))
    rows = _run(tmp_path, trainer, _settings(tmp_path / "W", uncertain_threshold=0.2))
    assert len(_trained(trainer, "hand_only") + _trained(trainer, "all_labels")) == \
        baseline_calls
    assert len(list((tmp_path / "W" / "seed2").glob("loop-*"))) == 2  # one per setting
    assert [r["accepted"] for r in rows if r["run"] == "loop round 1"] == [6]
    assert next(r for r in rows if r["run"] == "baseline hand_only")["test_map50"] == "1.0000"


def test_every_setting_starts_from_one_shared_first_round(tmp_path):
    trainer = FakeTrainer(tmp_path / "calls.jsonl")
    _run(tmp_path, trainer)
    _run(tmp_path, trainer, _settings(tmp_path / "W", uncertain_threshold=0.2))
    assert len(_trained(trainer, "first_stages/stage")) == 2  # loop (both settings), all
    first = _warm_starts(trainer, "loop")
    assert len(first) == 2 and first[0] == first[1]
    assert len(list((tmp_path / "W" / "seed2").glob("loop-*"))) == 2
    _run(tmp_path, trainer, seeds=(3,))  # other hand images: other first stages
    assert len(_trained(trainer, "first_stages/stage")) == 4


def test_seeds_repeat_everything_and_the_summary_gives_mean_and_sd(tmp_path):
    trainer = FakeTrainer(tmp_path / "calls.jsonl")
    rows = _run(tmp_path, trainer, seeds=(0, 1))
    assert sorted({r["seed"] for r in rows}) == [0, 1]
    hands = [sorted(p.name for p in (tmp_path / "W" / f"seed{s}" / "split" / "L").glob("*.png"))
             for s in (0, 1)]
    assert hands[0] != hands[1]  # each seed has its own split
    summary = {r["run"]: r for r in summarize(rows)}
    assert summary["baseline all_labels"]["seeds"] == "2/2"
    assert summary["baseline all_labels"]["test_map50"] == "1.000 ± 0.000"
    assert "± " in (tmp_path / "W" / "report" / "simulate.md").read_text()


def test_summary_statistics_of_known_values():
    rows = [{"seed": s, "run": "x", "steps": 5, "test_map50": v, "note": ""}
            for s, v in enumerate(("0.1", "0.2", "0.3"))]
    rows.append({"seed": 3, "run": "x", "steps": 5, "test_map50": "", "note": "diverged at step 7"})
    (row,) = summarize(rows)
    assert row["test_map50"] == "0.200 ± 0.100" and row["seeds"] == "3/4"
    assert row["note"] == "seed 3: diverged at step 7"


class DivergingTrainer(FakeTrainer):
    """Diverges once in every training whose folder contains ``where``."""

    def __init__(self, log, where: str):
        super().__init__(log)
        self.where = where

    def train(self, round_dir, records, steps, warm_start, pseudo=None):
        if self.where in str(round_dir):
            self._note(call="diverged", round_dir=str(round_dir))
            raise DivergedError(round_dir, 7)
        return super().train(round_dir, records, steps, warm_start)


def test_a_diverged_baseline_is_marked_and_the_rest_goes_on(tmp_path):
    trainer = DivergingTrainer(tmp_path / "calls.jsonl", "hand_only")
    rows = _run(tmp_path, trainer)
    by_run = {r["run"]: r for r in rows}
    assert by_run["baseline hand_only"]["note"] == "diverged at step 7"
    assert by_run["baseline all_labels"]["test_map50"] == "1.0000"
    assert by_run["loop round 2"]["test_map50"] == "1.0000"
    # a later run reports it again without training it again
    again = _run(tmp_path, trainer)
    assert {r["run"]: r for r in again}["baseline hand_only"]["note"] == "diverged at step 7"
    assert sum(c["call"] == "diverged" for c in trainer.calls()) == 1


def test_a_diverged_loop_is_marked_and_the_baselines_still_run(tmp_path):
    trainer = DivergingTrainer(tmp_path / "calls.jsonl", "rounds/02")
    rows = _run(tmp_path, trainer)
    by_run = {r["run"]: r for r in rows}
    assert by_run["loop round 1"]["test_map50"] == "1.0000"
    assert by_run["loop round 2"]["note"] == "diverged at step 7"
    assert by_run["baseline hand_only"]["steps"] == 25  # the schedule the loop set out on
    assert summarize(rows)[1]["seeds"] == "0/1"


def test_review_budget_verifies_the_queue_head_and_adds_a_person_alone_baseline(tmp_path):
    trainer = FakeTrainer(tmp_path / "calls.jsonl")
    rows = _run(tmp_path, trainer, review_budget=2)
    loop_dir = next((tmp_path / "W" / "seed2").glob("loop-*"))
    from tsoda.loop.journal import Journal
    journal = Journal(loop_dir / "journal.sqlite")
    reviewed = journal.get_meta("reviewed/1")
    assert len(reviewed) == 2
    for image_id in reviewed:  # hidden truth, now a verified label
        written = voc.read_voc(loop_dir / "labels" / (Path(image_id).stem + ".xml"))
        truth = voc.read_voc(tmp_path / "D" / (Path(image_id).stem + ".xml"))
        assert written.verified and written.objects == truth.objects
    statuses = {r.id: r.status for r in journal.images()}
    assert all(statuses[i] == "verified" for i in reviewed)
    by_run = {r["run"]: r for r in rows}
    assert by_run["loop round 1"]["reviewed"] == 0 and by_run["loop round 2"]["reviewed"] == 2
    # the person alone gets as many labels as the loop's last model trained on
    assert by_run["baseline person_alone"]["accepted"] == 3 + len(reviewed)
    # round 1's effort is as round 1 left the pool, though its labels were reviewed later
    assert by_run["loop round 1"]["labelled_share"] == f"{6 / 9:.3f}"


def test_image_effort_counts_draws_deletes_and_ignore_regions():
    flame = lambda box, difficult=False: voc.VocObject("flame", box, difficult)  # noqa: E731
    truth = voc.VocAnnotation("a", 200, 100, objects=(
        flame((0, 0, 10, 10)), flame((50, 50, 60, 60)), flame((100, 0, 140, 40)),
        flame((150, 50, 190, 90))))
    labels = voc.VocAnnotation("a", 200, 100, objects=(
        flame((0, 0, 10, 11)),                       # matches truth 0
        flame((20, 20, 30, 30)),                     # wrong: delete
        flame((50, 50, 60, 60), difficult=True),     # region on truth 1: one edit, no draw
        flame((95, 0, 200, 100), difficult=True)))   # covers truth 2 and 3 (not IoU matches)
    effort = image_effort(labels, truth)
    assert (effort.hidden, effort.labelled, effort.labels, effort.regions) == (4, 1, 2, 2)
    # draws: truth 2, 3 (truth 1 is settled by its region); deletes: 1; regions: 2
    assert effort.edits == 2 + 1 + 2
    assert effort.false_background == 0  # every missed box lies inside a region
    bare = image_effort(voc.VocAnnotation("a", 200, 100, objects=labels.objects[:2]), truth)
    assert bare.false_background == 3 and bare.edits == 3 + 1
    assert image_effort(None, truth).edits == 4 and image_effort(None, truth).labelled == 0


def test_a_work_dir_reused_with_another_fraction_is_refused(tmp_path):
    trainer = FakeTrainer(tmp_path / "calls.jsonl")
    _run(tmp_path, trainer)
    data, test = tmp_path / "D", tmp_path / "T"
    with pytest.raises(AnnotateError, match=r"labeled_fraction.*use another --work_dir"):
        simulate(_settings(tmp_path / "W"), Simulation(data, 0.5, test, seeds=(2,)), trainer,
                 RoundDetector, LABELS, progress=False, echo=lambda line: None)


def test_another_test_set_rescores_the_cached_baselines_without_training(tmp_path):
    trainer = FakeTrainer(tmp_path / "calls.jsonl")
    _run(tmp_path, trainer)
    trained = len([c for c in trainer.calls() if c["call"] == "train"])
    other = labelled_set(tmp_path / "T2", 2)
    rows = simulate(_settings(tmp_path / "W"), Simulation(tmp_path / "D", 0.25, other,
                                                          seeds=(2,)),
                    trainer, RoundDetector, LABELS, progress=False, echo=lambda line: None)
    assert len([c for c in trainer.calls() if c["call"] == "train"]) == trained
    folder = next((tmp_path / "W" / "seed2" / "baselines").glob("hand_only-*"))
    assert len(list(folder.glob("result-*.json"))) == 2  # one score per test set
    assert {r["run"]: r for r in rows}["baseline hand_only"]["test_map50"] == "1.0000"


def test_baselines_flag_trains_only_the_chosen_baselines_and_a_later_run_adds_the_rest(
        tmp_path):
    trainer = FakeTrainer(tmp_path / "calls.jsonl")
    rows = _run(tmp_path, trainer, baselines=("hand_only",))
    assert [r["run"] for r in rows if r["run"].startswith("baseline")] == ["baseline hand_only"]
    assert _trained(trainer, "all_labels") == []
    assert len(_trained(trainer, "first_stages/stage")) == 1  # the loop's, shared by hand only
    hand_calls = len(_trained(trainer, "hand_only"))
    rows = _run(tmp_path, trainer)  # both: hand only comes from the cache
    assert [r["run"] for r in rows if r["run"].startswith("baseline")] == \
        ["baseline hand_only", "baseline all_labels"]
    assert len(_trained(trainer, "hand_only")) == hand_calls
    assert _trained(trainer, "all_labels") == [("stage2", 15, True)]


@pytest.mark.parametrize("text", ["", "hand", "hand_only,everything"])
def test_baselines_flag_refuses_unknown_names(text, capsys):
    from tsoda.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--pipeline_config_path", "p", "--dataset_dir",
                                   "d", "--labeled_fraction", "0.1", "--work_dir", "w",
                                   "--baselines", text])
    assert "must be hand_only, all_labels or both" in capsys.readouterr().err
