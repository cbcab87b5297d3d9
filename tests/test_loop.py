"""The TSODA loop with fakes: stopping rules, acceptance, splits, reviews, resume."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from auto_annotate import voc
from auto_annotate.label_map import parse_label_map
from tests.helpers import LABEL_MAP
from tests.loop_fakes import FakeTrainer, RoundDetector, make_dataset
from tsoda.loop.rounds import LoopSettings, TsodaLoop, split_ids

LABELS = parse_label_map(LABEL_MAP)


def settings(root: Path, **overrides) -> LoopSettings:
    labeled, unlabeled = root / "L", root / "U"
    values = {"labeled_dir": labeled, "unlabeled_dir": unlabeled, "work_dir": root / "W",
              "threshold": 0.9, "uncertain_threshold": 0.5, "ignore_regions": False,
              "initial_steps": 100, "step_increment": 50, "max_steps": 180,
              "test_fraction": 0.25, "seed": 3, **overrides}
    return LoopSettings(**values)


def make_loop(root: Path, trainer=None, **overrides) -> TsodaLoop:
    return TsodaLoop(settings(root, **overrides), trainer or FakeTrainer(root / "calls.jsonl"),
                     RoundDetector, LABELS, progress=False, echo=lambda line: None)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir())}


@pytest.fixture()
def data(tmp_path):
    make_dataset(tmp_path)
    return tmp_path


def test_rounds_accept_confident_images_and_stop_when_nothing_new(data):
    before = {"L": digest(data / "L"), "U": digest(data / "U")}
    tsoda = make_loop(data)
    assert tsoda.run() == "round 3 accepted nothing new"
    rounds = tsoda.journal.rounds()
    assert [(r.round, r.accepted, r.held_back) for r in rounds] == [(1, 4, 4), (2, 4, 0),
                                                                    (3, 0, 0)]
    assert tsoda.journal.counts() == {"hand": 5, "verified": 0, "auto": 8, "unlabelled": 1}
    assert {"L": digest(data / "L"), "U": digest(data / "U")} == before  # never modified
    calls = FakeTrainer(data / "calls.jsonl").calls()
    trains = [c for c in calls if c["call"] == "train"]
    assert [c["steps"] for c in trains] == [100, 150, 180]  # +50 per round, capped
    assert trains[0]["warm_start"] is None
    assert trains[1]["warm_start"].endswith("rounds/01/model/ckpt")
    mixed = voc.read_voc(data / "W" / "labels" / "mixed0.xml")
    assert [o.name for o in mixed.objects] == ["flame", "smoke"]  # round 2 found the blue one
    report = data / "W" / "report"
    assert {p.name for p in report.iterdir()} >= {"rounds.md", "rounds.csv", "map.png",
                                                  "remaining.png", "review_queue.csv"}
    assert "| 1 | 100 | 5 | 0 | 4 | 4 | 4 | 5 | 0.900 | 0.500 |  |" in \
        (report / "rounds.md").read_text()
    assert rounds[0].metrics["hand"]["map50"] == pytest.approx(1.0)


def test_only_detections_at_or_above_the_threshold_become_labels(data):
    tsoda = make_loop(data, max_rounds=1)
    tsoda.run()
    auto = {r.id: r for r in tsoda.journal.images("auto")}
    assert sorted(auto) == [f"U/red{i}.png" for i in range(4)]
    assert all(r.boxes == 1 and r.min_score == pytest.approx(0.95) for r in auto.values())
    held = tsoda.journal.get_meta("held_back/1")
    assert sorted(image for image, _ in held) == ["U/blue0.png", "U/blue1.png", "U/mixed0.png",
                                                  "U/mixed1.png"]
    queue = (data / "W" / "report" / "review_queue.csv").read_text().splitlines()
    assert queue[1].startswith("1,U/mixed0.png,held back")  # uncertain images come first
    # held-back images carry their detections as suggestions, not labels
    suggested = voc.read_voc(data / "W" / "labels" / "mixed0.xml")
    assert [(o.name, o.difficult) for o in suggested.objects] == [("flame", True),
                                                                   ("smoke", True)]
    assert {r.id for r in tsoda.journal.images("unlabelled")} >= {"U/mixed0.png",
                                                             "U/blue0.png"}


def test_without_the_uncertain_band_partly_detected_images_are_accepted(data):
    tsoda = make_loop(data, max_rounds=1, uncertain_threshold=0.9)
    tsoda.run()
    assert "U/mixed0.png" in {r.id for r in tsoda.journal.images("auto")}
    labels = voc.read_voc(data / "W" / "labels" / "mixed0.xml")
    assert [o.name for o in labels.objects] == ["flame"]  # the blue object is lost


def test_stops_at_max_rounds_and_when_nothing_is_left(data, tmp_path):
    assert make_loop(data, max_rounds=2).run() == "reached --max_rounds 2"
    (data / "U" / "empty.png").unlink()
    other = make_loop(data, work_dir=tmp_path / "W2")
    assert other.run() == "no unlabelled image is left"
    assert len(other.journal.rounds()) == 2


@pytest.mark.parametrize("count,fraction,expected", [(10, 0.2, 2), (7, 0.25, 2), (3, 0.0, 0)])
def test_split_is_seeded_random_and_keeps_the_ratio(count, fraction, expected):
    ids = [f"U/img{i:02d}.png" for i in range(count)]
    test = split_ids(ids, fraction, seed=1, salt="round1")
    assert len(test) == expected
    assert split_ids(ids, fraction, seed=1, salt="round1") == test
    if expected:
        draws = {frozenset(split_ids(ids, fraction, seed=s, salt="r")) for s in range(20)}
        assert len(draws) > 3  # depends on the seed, not on directory order


def test_hand_labels_split_by_test_fraction_and_every_accepted_image_trains(data):
    tsoda = make_loop(data, test_fraction=0.25)
    tsoda.run()
    hand = tsoda.journal.images("hand")
    assert sum(r.split == "test" for r in hand) == round(5 * 0.25)
    auto = tsoda.journal.images("auto")
    assert auto and all(r.split == "train" for r in auto)  # auto labels are not test truth


def test_verified_files_become_hand_labels_and_are_never_overwritten(data):
    tsoda = make_loop(data, max_rounds=1)
    tsoda.run()
    labels = data / "W" / "labels"
    reviewed = voc.read_voc(labels / "red0.xml")
    voc.write_voc(labels / "red0.xml", voc.VocAnnotation(**{**reviewed.__dict__,
                                                            "verified": True}))
    drawn = voc.VocAnnotation("blue0.png", 64, 48, verified=True,
                              objects=(voc.VocObject("smoke", (10.0, 10.0, 40.0, 40.0)),))
    voc.write_voc(labels / "blue0.xml", drawn)  # a person labelled one the model missed
    (labels / "red1.xml").unlink()  # and rejected an auto label
    kept = {name: (labels / name).read_bytes() for name in ("red0.xml", "blue0.xml")}
    again = make_loop(data, max_rounds=3)
    again.run()
    counts = again.journal.counts()
    assert counts["verified"] == 2 and counts["hand"] == 5
    assert {name: (labels / name).read_bytes() for name in kept} == kept
    statuses = {r.id: r.status for r in again.journal.images()}
    assert statuses["U/red0.png"] == statuses["U/blue0.png"] == "verified"
    assert statuses["U/red1.png"] == "auto"  # relabelled by a later round
    assert sum(counts.values()) == 14  # nothing counted twice


def test_changed_settings_on_resume_are_refused(data):
    make_loop(data, max_rounds=1).run()
    with pytest.raises(ValueError, match="use a new --work_dir"):
        make_loop(data, seed=4).run()


def _final_state(tsoda):
    images = [(r.id, r.status, r.split, r.round, r.boxes) for r in tsoda.journal.images()]
    rounds = [(r.round, r.stage, r.steps, r.accepted, r.held_back, r.metrics)
              for r in tsoda.journal.rounds()]
    return images, rounds


@pytest.mark.parametrize("stage", ["records", "train", "export", "evaluate", "label",
                                   "accept"])
def test_resume_after_a_crash_at_every_stage(data, tmp_path, monkeypatch, stage):
    reference = make_loop(data, work_dir=tmp_path / "ref",
                          trainer=FakeTrainer(tmp_path / "ref_calls.jsonl"))
    reference.run()
    crashes = {"count": 0}

    def crash_once(original):
        def wrapper(*args, **kwargs):
            if crashes["count"] == 0 and _in_round(2, args):
                crashes["count"] += 1
                raise KeyboardInterrupt(f"killed in {stage}")
            return original(*args, **kwargs)
        return wrapper

    trainer = FakeTrainer(tmp_path / "calls.jsonl")
    tsoda = make_loop(data, trainer=trainer)
    if stage in ("train", "export"):
        setattr(trainer, stage, crash_once(getattr(trainer, stage)))
    else:
        method = f"_stage_{stage}"
        monkeypatch.setattr(TsodaLoop, method, crash_once(getattr(TsodaLoop, method)))
    with pytest.raises(KeyboardInterrupt):
        tsoda.run()
    tsoda.journal.close()
    resumed = make_loop(data, trainer=FakeTrainer(tmp_path / "calls.jsonl"))
    resumed.run()
    assert _final_state(resumed) == _final_state(reference)
    trained = [c["round_dir"][-2:] for c in trainer.calls() if c["call"] == "train"]
    assert trained == ["01", "02", "03"]  # no finished round was trained again


def _in_round(number: int, args) -> bool:
    return any(isinstance(a, (str, Path)) and f"rounds/{number:02d}" in str(a) for a in args) \
        or number in args


def test_journal_is_sqlite_with_every_image(data):
    make_loop(data, max_rounds=1).run()
    with sqlite3.connect(data / "W" / "journal.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 14
        assert db.execute("SELECT stage FROM rounds").fetchall() == [("accept",)]


def test_labelled_folder_must_differ_from_unlabelled(data):
    with pytest.raises(ValueError, match="must be different"):
        make_loop(data, unlabeled_dir=data / "L")


@pytest.mark.parametrize("stage", ["train", "label"])
def test_sigkill_then_the_same_command_continues(data, tmp_path, stage):
    import os
    import signal
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    work = data / "W"
    command = [sys.executable, "-m", "tests.loop_process", str(data), str(work)]
    process = subprocess.Popen([*command, stage], cwd=repo, env=env)
    markers = [work / "rounds" / "01" / "in_train", work / "in_label"]
    deadline = time.monotonic() + 60
    while not any(m.exists() for m in markers) and time.monotonic() < deadline:
        assert process.poll() is None, "the loop ended before reaching the stage"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    subprocess.run(command, cwd=repo, env=env, check=True, timeout=120)

    reference = make_loop(data, work_dir=tmp_path / "ref",
                          trainer=FakeTrainer(tmp_path / "ref_calls.jsonl"))
    reference.run()
    resumed = make_loop(data)
    assert _final_state(resumed) == _final_state(reference)
    trained = [c["round_dir"][-2:] for c in FakeTrainer(data / "calls.jsonl").calls()
               if c["call"] == "train"]
    assert trained == ["01", "02", "03"]  # killed training left no record; nothing retrained


def test_with_ignore_regions_uncertain_detections_are_written_as_difficult_objects(data):
    tsoda = make_loop(data, max_rounds=1, ignore_regions=True)
    tsoda.run()
    auto = {r.id: r for r in tsoda.journal.images("auto")}
    assert sorted(auto) == ["U/mixed0.png", "U/mixed1.png"] + [f"U/red{i}.png" for i in range(4)]
    labels = voc.read_voc(data / "W" / "labels" / "mixed0.xml")
    assert [(o.name, o.difficult) for o in labels.objects] == [("flame", False),
                                                               ("smoke", True)]
    assert auto["U/mixed0.png"].boxes == 1  # the region is not counted as a label
    held = sorted(image for image, _ in tsoda.journal.get_meta("held_back/1"))
    assert held == ["U/blue0.png", "U/blue1.png"]  # nothing confident: held, with suggestions


def test_thresholds_are_chosen_from_the_hand_test_when_not_given(data):
    tsoda = make_loop(data, max_rounds=1, threshold=None, uncertain_threshold=None,
                      min_holdout_boxes=1)
    lines = []
    tsoda.echo = lines.append
    tsoda.run()
    chosen = tsoda.journal.get_meta("thresholds/1")
    # the hand test image's red box is found at 0.95, but one hit cannot show precision 0.9
    # (its 90% bound is 0.38): nothing is accepted, the detections go to review
    assert chosen["accept"] > 1.0 and chosen["uncertain"] == pytest.approx(0.95)
    assert chosen["source"] == ("hand test, 1 boxes; precision 0.9 not shown (best 90% bound "
                                "0.38 at 0.950): nothing accepted")
    assert any(line.startswith("round 1: accept none, uncertain >= 0.950") for line in lines)
    assert tsoda.journal.counts()["auto"] == 0 and tsoda.journal.get_meta("held_back/1")
    # the report shows no precision for "nothing accepted" (the best bound was the top hit's)
    assert "| none | 0.950 |  |" in (data / "W" / "report" / "rounds.md").read_text()


def test_too_few_hand_test_boxes_fall_back_to_the_count_prior_and_say_so(data):
    tsoda = make_loop(data, max_rounds=1, threshold=None, uncertain_threshold=None)
    tsoda.run()
    chosen = tsoda.journal.get_meta("thresholds/1")
    assert chosen["source"] == ("count prior 1.00 boxes per image (the hand test has 1 boxes, "
                                "fewer than 10)")
    # 9 pool images x 1 box: the 9th best of 6 red (0.95) and 4 blue (0.7) detections
    assert chosen["accept"] == pytest.approx(0.7)
    assert len(tsoda.journal.images("auto")) == 8


def test_a_label_a_person_saved_under_the_work_dir_is_never_replaced(data):
    lines = []
    first = make_loop(data, max_rounds=1)
    first.echo = lines.append
    first.run()
    held = [image_id for image_id, _ in first.journal.get_meta("held_back/1")]
    rows = {r.id: r for r in first.journal.images("unlabelled")}
    mine = rows[held[0]]
    person = voc.VocAnnotation(Path(mine.image).name, 64, 48,
                               objects=(voc.VocObject("smoke", (1, 1, 20, 20)),))
    voc.write_voc(mine.xml, person)  # saved with Ctrl+S, not verified
    saved = Path(mine.xml).read_bytes()
    first.journal.close()

    second = make_loop(data, max_rounds=2)
    second.echo = lines.append
    second.run()
    assert Path(mine.xml).read_bytes() == saved
    status = {r.id: r.status for r in second.journal.images()}
    assert status[mine.id] == "unlabelled" and all(status[i] == "auto" for i in held[1:])
    assert second.journal.get_meta("edited/2") == [mine.id]
    assert any("kept" in line and mine.id in line for line in lines)
    assert second.journal.rounds()[1].accepted == 3


def test_an_unreadable_hand_test_label_is_reported_not_scored_silently(data):
    ids = [f"L/hand{i}.png" for i in range(5)]
    [test_id] = split_ids(ids, 0.25, 3, "hand")
    broken = data / "L" / (Path(test_id).stem + ".xml")
    broken.write_text("<annotation><broken")
    lines = []
    tsoda = make_loop(data, max_rounds=1)
    tsoda.echo = lines.append
    tsoda.run()
    hand = tsoda.journal.rounds()[0].metrics["hand"]
    assert (hand["images"], hand["asked"]) == (0, 1)
    assert any("evaluation" in line and broken.name in line for line in lines)


def test_tta_labels_and_scores_the_hand_test_with_the_same_fused_detector(data):
    tsoda = make_loop(data, max_rounds=1, tta=("flip",))
    tsoda.run()
    from auto_annotate.tta import TtaDetector

    [detector] = tsoda._detectors.values()
    assert isinstance(detector, TtaDetector) and detector.views == ("flip",)
    auto = {r.id for r in tsoda.journal.images("auto")}
    assert auto == {f"U/red{i}.png" for i in range(4)}  # both views agree: as without TTA


def test_accepted_labels_train_as_their_own_stream_when_asked(data):
    trainer = FakeTrainer(data / "calls.jsonl")
    tsoda = make_loop(data, trainer, max_rounds=2, pseudo_share=0.5, pseudo_weight=2.0,
                      pseudo_box_loss=False, strong_augment=True)
    tsoda.run()
    first, second = [c for c in trainer.calls() if c["call"] == "train"]
    assert first["records"].endswith("rounds/01/train.record*") and first["pseudo"] is None
    assert second["records"].endswith("rounds/02/hand.record*")
    assert second["pseudo"] == {"input_path": str(data / "W" / "rounds" / "02" /
                                                  "pseudo.record*"), "share": 0.5,
                                "weight": 2.0, "background_weight": 1.0, "box_loss": False,
                                "strong_augment": True}
    round2 = data / "W" / "rounds" / "02"
    assert list(round2.glob("hand.record*")) and list(round2.glob("pseudo.record*"))
    assert not list(round2.glob("train.record*"))


def test_a_crash_between_writing_a_label_and_recording_its_hash_is_not_a_person_edit(data):
    first = make_loop(data, max_rounds=1)
    first.run()
    held = [image_id for image_id, _ in first.journal.get_meta("held_back/1")]
    xml = Path(next(r for r in first.journal.images() if r.id == held[0]).xml)
    written = xml.read_bytes()
    with first.journal.transaction():  # as if killed after the write, before the record
        first.journal._db.execute("DELETE FROM meta WHERE key = ?",
                                  (f"label_sha256/{held[0]}",))
        first.journal._db.execute("UPDATE rounds SET stage = 'label' WHERE round = 1")
    first.journal.close()
    again = make_loop(data, max_rounds=1)
    again.run()
    assert again.journal.get_meta("edited/1") == []
    assert xml.read_bytes() == written
    assert again.journal.get_meta(f"label_sha256/{held[0]}") is not None


def test_a_restart_with_another_stream_setting_trains_on_what_its_records_stage_wrote(data):
    trainer = FakeTrainer(data / "calls.jsonl")
    make_loop(data, trainer, max_rounds=2, pseudo_share=0.5).run()
    tsoda = make_loop(data, trainer, max_rounds=2)
    with tsoda.journal.transaction():  # round 2 to be redone from its records stage
        tsoda.journal._db.execute("UPDATE rounds SET stage = NULL WHERE round = 2")
    tsoda.run()
    round2 = data / "W" / "rounds" / "02"
    assert list(round2.glob("train.record*"))
    assert not list(round2.glob("hand.record*")) and not list(round2.glob("pseudo.record*"))
    last = [c for c in trainer.calls() if c["call"] == "train"][-1]
    assert last["records"].endswith("rounds/02/train.record*") and last["pseudo"] is None


def test_a_model_failure_while_evaluating_stops_the_round_and_running_again_retries(data):
    """Before, evaluation on fewer images would have been recorded, and the round's
    thresholds chosen from it; now the stage is not recorded and a second run redoes it."""
    from tsoda.errors import TrainingError

    class FailingOnce(RoundDetector):
        failures = 1

        def predict(self, images):
            if FailingOnce.failures:
                FailingOnce.failures -= 1
                raise RuntimeError("out of memory")
            return super().predict(images)

    tsoda = TsodaLoop(settings(data, max_rounds=1), FakeTrainer(data / "calls.jsonl"),
                      FailingOnce, LABELS, progress=False, echo=lambda line: None)
    with pytest.raises(TrainingError, match="round 1: evaluation on the hand test set failed "
                                            r"\(model failed: .*out of memory"):
        tsoda.run()
    assert tsoda.journal.rounds()[0].stage == "export"  # evaluate not recorded
    tsoda.journal.close()
    again = make_loop(data, max_rounds=1)
    again.run()
    (round_row,) = again.journal.rounds()
    assert round_row.done and round_row.metrics["hand"]["images"] == \
        round_row.metrics["hand"]["asked"]
