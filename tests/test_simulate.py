"""tsoda simulate with fakes: the split, label quality against hidden truth, baselines."""

from __future__ import annotations

from pathlib import Path

import pytest

from auto_annotate import voc
from auto_annotate.label_map import parse_label_map
from tests.helpers import BLUE, LABEL_MAP, RED, draw, save
from tests.loop_fakes import FakeTrainer, RoundDetector
from tsoda.loop import LoopSettings
from tsoda.simulate import Simulation, make_split, match_boxes, simulate

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


def test_simulation_reports_rounds_and_baselines(tmp_path):
    data = labelled_set(tmp_path / "D", 12, shift=4)  # hidden truth 4 px wider than found
    test = labelled_set(tmp_path / "T", 4)
    trainer = FakeTrainer(tmp_path / "calls.jsonl")
    work = tmp_path / "W"
    settings = LoopSettings(labeled_dir=work / "split" / "L", unlabeled_dir=work / "split" / "U",
                            work_dir=work, threshold=0.9, initial_steps=10, step_increment=5,
                            max_steps=100, test_fraction=0.0, seed=2)
    rows = simulate(settings, Simulation(data, 0.25, test), trainer, RoundDetector, LABELS,
                    progress=False, echo=lambda line: None)
    loop_rows = [r for r in rows if r["run"].startswith("loop")]
    assert [r["accepted"] for r in loop_rows] == [6, 3]  # red first, blue in round 2
    assert loop_rows[0]["label_precision"] == "1.000"  # IoU 26/30 >= 0.5: still a match
    assert [r["steps"] for r in rows] == [10, 25, 25, 25]  # baselines get the total
    baselines = [c for c in trainer.calls() if c["call"] == "train" and "baseline" in
                 c["round_dir"]]
    assert sorted((Path(c["round_dir"]).name, c["steps"]) for c in baselines) == [
        ("baseline_all_labels", 25), ("baseline_hand_only", 25)]
    assert float(rows[-1]["test_map50"]) == pytest.approx(1.0)  # the fake finds every patch
    assert "| baseline hand_only | 25 |" in (work / "report" / "simulate.md").read_text()
