"""Two real TSODA rounds with a tiny config on synthetic images, through the CLI (slow)."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import draw, save
from tests.tsoda_helpers import synthetic_voc, write_tiny_config
from tsoda.cli import main
from tsoda.config.pipeline import load_pipeline_config
from tsoda.loop.journal import Journal

pytestmark = pytest.mark.slow


def test_two_real_rounds(tmp_path, capsys):
    labeled = synthetic_voc(tmp_path / "L", count=8, seed=1)
    pool = synthetic_voc(tmp_path / "pool", count=6, seed=2)
    unlabeled = tmp_path / "U"
    unlabeled.mkdir()
    for image in pool.glob("*.png"):
        shutil.copy(image, unlabeled)
    for index in range(2):  # nothing to find: these stay unlabelled, so round 2 runs
        save(unlabeled / f"empty{index}.png", draw((160, 120)))
    label_map = tmp_path / "label_map.pbtxt"
    label_map.write_text('item { id: 1 name: "flame" }\n')
    config = write_tiny_config(tmp_path / "tiny.config", "unused", label_map)
    work = tmp_path / "W"
    code = main(["run", "--pipeline_config_path", str(config), "--labeled_dir", str(labeled),
                 "--unlabeled_dir", str(unlabeled), "--work_dir", str(work),
                 "--threshold", "0.3", "--uncertain_threshold", "0.3", "--initial_steps", "100",
                 "--step_increment", "20", "--max_rounds", "2", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "stopped: reached --max_rounds 2" in out and "python -m auto_annotate.review" in out, \
        out
    journal = Journal(work / "journal.sqlite")
    rounds = journal.rounds()
    assert [(r.round, r.steps, r.stage) for r in rounds][:2] == [(1, 100, "accept"),
                                                                 (2, 120, "accept")]
    assert rounds[0].accepted >= 1  # the seed model labelled some of the pool
    hand = rounds[0].metrics["hand"]
    assert hand["images"] == 2  # round(8 * 0.2) hand test images, all scored
    assert 0.0 < hand["map50_95"] <= hand["map50"] <= 1.0 and hand["map50"] >= 0.5  # 1.0 seen
    second = load_pipeline_config(work / "rounds" / "02" / "pipeline.config").train_config
    assert second.fine_tune_checkpoint == rounds[0].checkpoint  # warm start from round 1
    assert second.optimizer.HasField("adam_optimizer")  # the user's optimizer is kept
    assert second.optimizer.adam_optimizer.learning_rate.constant_learning_rate \
        .learning_rate == pytest.approx(0.003)
    for name in ("rounds.md", "rounds.csv", "map.png", "remaining.png", "review_queue.csv"):
        assert (work / "report" / name).is_file()
    auto = journal.images("auto")
    assert all((work / "labels" / f"{r.id[2:-4]}.xml").is_file() for r in auto)
    assert not list(unlabeled.glob("*.xml"))  # the user's folders stay as they were
