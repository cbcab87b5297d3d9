"""Acceptance chosen from data: thresholds from a known score/truth table, the count-prior
fallback, fixed overrides, and the per-image decision with ignore regions."""

from __future__ import annotations

import pytest

from auto_annotate import voc
from tsoda import acceptance
from tsoda.loop import LoopSettings
from tsoda.thresholds import from_count_prior, from_hand_test, score_table

# (score, true positive) of 7 detections on hand test images holding 5 boxes
TABLE = [(0.9, True), (0.8, True), (0.7, False), (0.6, True), (0.5, False), (0.4, False),
         (0.3, True)]


@pytest.mark.parametrize("precision,recall,accept,uncertain,est_precision,est_recall", [
    (0.75, 0.8, 0.6, 0.3, 0.75, 0.8),   # lowest score with precision >= 0.75 is 0.6
    (0.95, 0.6, 0.8, 0.6, 1.0, 0.6),    # recall 0.6 is first reached at 0.6
    (0.95, 0.9, 0.8, 0.3, 1.0, 0.8),    # recall 0.9 is never reached: the lowest true positive
    (0.7, 0.2, 0.6, 0.6, 0.75, 0.6),    # uncertain never above accept
])
def test_thresholds_from_a_known_table(precision, recall, accept, uncertain, est_precision,
                                       est_recall):
    chosen = from_hand_test(TABLE, 5, precision, recall, min_boxes=5)
    assert (chosen.accept, chosen.uncertain) == (accept, uncertain)
    assert chosen.precision == pytest.approx(est_precision)
    assert chosen.recall == pytest.approx(est_recall)
    assert chosen.source == "hand test, 5 boxes"


def test_unreachable_precision_takes_the_best_and_says_so():
    table = [(0.9, False), (0.8, True), (0.7, True), (0.6, False), (0.5, False)]
    chosen = from_hand_test(table, 4, 0.9, 0.5, min_boxes=1)
    assert chosen.accept == 0.7 and chosen.precision == pytest.approx(2 / 3)
    tie = from_hand_test([(0.9, False), (0.8, True), (0.7, False), (0.6, True)], 4, 0.9, 0.5,
                         min_boxes=1)
    assert tie.accept == 0.6  # equal precision at 0.8 and 0.6: the lower gives more labels
    assert "precision 0.9 not reached" in chosen.source


def test_too_few_held_out_boxes_or_no_hit_gives_no_estimate():
    assert from_hand_test(TABLE, 5, 0.9, 0.9, min_boxes=6) is None
    assert from_hand_test([(0.9, False)], 20, 0.9, 0.9, min_boxes=6) is None


def test_count_prior_fallback():
    pool = [[0.9, 0.2], [0.8], [0.7, 0.6, 0.1], []]
    chosen = from_count_prior(pool, 1.0, "why")
    # 4 images x 1 box: the 4th best score; twice as many (8 > 6): the lowest
    assert (chosen.accept, chosen.uncertain) == (0.6, 0.1)
    assert chosen.source == "count prior 1.00 boxes per image (why)" and chosen.precision is None
    assert from_count_prior([[], []], 1.0, "none").accept == 1.0  # nothing found: accept none


def _settings(**changes) -> LoopSettings:
    return LoopSettings(labeled_dir="L", unlabeled_dir="U", work_dir="W", **changes)


def test_round_thresholds_use_the_hand_test_then_the_fallback_and_keep_fixed_values():
    hand = {"score_table": TABLE, "scored_boxes": 5}
    chosen = acceptance.round_thresholds(_settings(target_precision=0.75, target_recall=0.8,
                                                   min_holdout_boxes=5), hand, [], 1.0)
    assert (chosen.accept, chosen.uncertain) == (0.6, 0.3)
    fallback = acceptance.round_thresholds(_settings(), hand, [[0.9], [0.5]], 1.0)
    assert fallback.source.startswith("count prior") and "fewer than 10" in fallback.source
    forced = acceptance.round_thresholds(_settings(threshold=0.5, target_recall=0.8,
                                                   min_holdout_boxes=5), hand, [], 1.0)
    assert (forced.accept, forced.uncertain) == (0.5, 0.3)
    assert forced.source.startswith("--threshold fixed")
    both = acceptance.round_thresholds(_settings(threshold=0.5, uncertain_threshold=0.2),
                                       hand, [], 1.0)
    assert (both.accept, both.uncertain, both.source) == (0.5, 0.2, "fixed by --threshold")


def test_score_table_matches_one_to_one_by_class():
    truth = (voc.VocObject("flame", (0, 0, 10, 10)), voc.VocObject("smoke", (20, 20, 30, 30)),
             voc.VocObject("flame", (40, 40, 50, 50), difficult=True))
    found = [("flame", (0, 0, 10, 10), 0.9), ("flame", (0, 0, 10, 11), 0.8),
             ("flame", (20, 20, 30, 30), 0.7), ("flame", (40, 40, 50, 50), 0.6)]
    assert score_table(found, truth) == [(0.9, True), (0.8, False), (0.7, False), (0.6, False)]


OBJECTS = tuple(voc.VocObject("flame", (i * 10.0, 0.0, i * 10.0 + 5, 5.0)) for i in range(3))
FOUND = voc.VocAnnotation("a.png", 64, 48, objects=OBJECTS)


@pytest.mark.parametrize("scores,ignore,kind,written", [
    ([0.9, 0.6, 0.1], True, "accept", [False, True]),   # label + ignore region; 0.1 dropped
    ([0.9, 0.6, 0.1], False, "hold", [True, True]),     # band present: held, as suggestions
    ([0.9, 0.95, 0.1], False, "accept", [False, False]),
    ([0.6, 0.55, 0.1], True, "hold", [True, True]),     # nothing confident: suggestions
    ([0.2, 0.1, 0.1], True, "skip", None),
])
def test_decisions(scores, ignore, kind, written):
    from tsoda.thresholds import Thresholds

    decision = acceptance.decide(FOUND, scores, Thresholds(0.8, 0.5, "test"), ignore)
    assert decision.kind == kind
    if written is not None:
        assert [o.difficult for o in decision.annotation.objects] == written


def test_decision_refuses_a_manifest_that_does_not_match_the_file():
    from tsoda.thresholds import Thresholds

    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        acceptance.decide(FOUND, [0.9, 0.8], Thresholds(0.8, 0.5, "test"), True)


def test_threshold_study_replays_a_round_against_hidden_truth(tmp_path):
    import json

    from tsoda.threshold_study import load_round, main, replay
    from tsoda.thresholds import Thresholds

    data, labels = tmp_path / "D", tmp_path / "W" / "rounds" / "01" / "labels"
    flame = lambda x: voc.VocObject("flame", (x, 0.0, x + 10.0, 10.0))  # noqa: E731
    records = []
    for stem, truth, found, scores in (("a", [0, 20], [0, 20, 40], [0.9, 0.4, 0.8]),
                                       ("b", [0], [0], [0.3]), ("c", [5], [], [])):
        voc.write_voc(data / f"{stem}.xml", voc.VocAnnotation(
            f"{stem}.png", 64, 48, objects=tuple(flame(float(x)) for x in truth)))
        if found:
            voc.write_voc(labels / f"{stem}.xml", voc.VocAnnotation(
                f"{stem}.png", 64, 48, objects=tuple(flame(float(x)) for x in found)))
        records.append({"image": f"U/{stem}.png", "status": "annotated" if found else "empty",
                        "scores": scores})
    (labels / "auto_annotate_manifest.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records))
    pool = load_round(labels.parent, data)
    assert len(pool) == 3
    strict = replay(pool, Thresholds(0.7, 0.35, "t"), ignore_regions=True)
    # a: labels at 0, 40 (one right, one wrong), region on 20; b: 0.3 < 0.35, nothing
    assert (strict["accepted_images"], strict["held_back"], strict["precision"]) == (1, 0, "0.500")
    assert strict["labelled_share"] == f"{1 / 4:.3f}"
    assert strict["edits_per_box"] == f"{(0 + 1 + 1) / 4 + 2 / 4:.3f}"  # a: delete+settle
    assert strict["false_background"] == "0.000"
    loose = replay(pool, Thresholds(0.7, 0.35, "t"), ignore_regions=False)
    assert loose["accepted_images"] == 0 and loose["held_back"] == 1
    assert main(["--loop_dir", str(tmp_path / "W"), "--dataset_dir", str(data)]) == 0
    assert "| 0.70 | 0.30 | yes |" in (tmp_path / "W" / "report" /
                                       "threshold_study_round1.md").read_text()


def test_threshold_study_of_a_folder_that_is_no_round(tmp_path, capsys):
    from tsoda.threshold_study import main

    assert main(["--loop_dir", str(tmp_path), "--dataset_dir", str(tmp_path)]) == 2
    assert "no labelling manifest" in capsys.readouterr().err


def test_score_table_matches_in_score_order_as_coco_does():
    truth = (voc.VocObject("flame", (0, 0, 10, 10)),)
    found = [("flame", (0, 0, 10, 12), 0.9),   # IoU 0.83, the higher score: the match
             ("flame", (0, 0, 10, 10), 0.5)]   # IoU 1.0, but the box is taken
    assert score_table(found, truth) == [(0.9, True), (0.5, False)]
