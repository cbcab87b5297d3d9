"""Acceptance chosen from data: thresholds from a known score/truth table, the count-prior
fallback, fixed overrides, and the per-image decision with ignore regions."""

from __future__ import annotations

import pytest

from auto_annotate import voc
from tsoda.loop import acceptance
from tsoda.loop.rounds import LoopSettings
from tsoda.loop.thresholds import from_count_prior, from_hand_test, score_table

# 20 hits (scores 1.00 .. 0.81), then 20 misses (0.80 .. 0.61), then 4 hits (0.60 .. 0.57)
TABLE = [(round(1.0 - i / 100, 2), i < 20 or i >= 40) for i in range(44)]


def test_precision_bound_is_wilsons_lower_bound():
    from tsoda.loop.thresholds import precision_bound

    # all hits: n / (n + z^2); 15 of 15 is the fewest that show 0.9 at 90% confidence
    assert precision_bound([15], [15]) == pytest.approx(15 / (15 + 1.2816 ** 2))
    assert precision_bound([14], [14]) < 0.9 <= precision_bound([15], [15])
    assert precision_bound([2], [2]) == pytest.approx(2 / (2 + 1.2816 ** 2))  # 0.55, not 1.0
    assert precision_bound([20], [21]) < 0.9  # one miss among 21 detections


def test_thresholds_from_a_known_table():
    chosen = from_hand_test(TABLE, 50, 0.9, 0.9, min_boxes=10)
    # accept: the 20th hit, as one more (a miss) drops the bound below 0.9
    assert chosen.accept == 0.81 and chosen.precision == 1.0
    assert chosen.precision_bound == pytest.approx(20 / (20 + 1.2816 ** 2))
    # uncertain: 90% of the 24 boxes the model finds at all is 21.6: the 22nd hit, at 0.59
    assert chosen.uncertain == 0.59 and chosen.recall == pytest.approx(22 / 50)
    assert chosen.source == "hand test, 50 boxes"
    lower = from_hand_test(TABLE, 50, 0.8, 0.5, min_boxes=10)
    assert lower.accept < 0.81 and lower.precision_bound >= 0.8  # a lower target, more boxes
    assert lower.uncertain == lower.accept  # recall 0.5 x 24 boxes is within the accepted


def test_unreachable_precision_accepts_nothing_and_says_why():
    from tsoda.loop.thresholds import NOTHING

    table = [(0.9, False), (0.8, True), (0.7, True), (0.6, False), (0.5, False)]
    chosen = from_hand_test(table, 4, 0.9, 0.5, min_boxes=1)
    assert chosen.accept == NOTHING > 1.0 and chosen.uncertain == 0.8
    assert chosen.source.endswith("precision 0.9 not shown (best 90% bound 0.32 at 0.700): "
                                  "nothing accepted")
    assert chosen.describe().startswith("accept none, uncertain >= 0.800")
    two = from_hand_test([(0.6, True), (0.39, True), (0.3, False)], 20, 0.9, 0.9, min_boxes=10)
    assert two.accept == NOTHING and two.precision == 1.0 and two.precision_bound < 0.6
    decision = acceptance.decide(FOUND, [0.9, 0.6, 0.1], chosen, True)
    assert decision.kind == "hold"  # the detections go to review as suggestions


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
    hand = {"score_table": TABLE, "scored_boxes": 50}
    chosen = acceptance.round_thresholds(_settings(), hand, [], 1.0)
    assert (chosen.accept, chosen.uncertain) == (0.81, 0.59)
    few = {"score_table": TABLE, "scored_boxes": 5}
    fallback = acceptance.round_thresholds(_settings(), few, [[0.9], [0.5]], 1.0)
    assert fallback.source.startswith("count prior") and "fewer than 10" in fallback.source
    forced = acceptance.round_thresholds(_settings(threshold=0.7), hand, [], 1.0)
    assert (forced.accept, forced.uncertain) == (0.7, 0.59)
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
    from tsoda.loop.thresholds import Thresholds

    decision = acceptance.decide(FOUND, scores, Thresholds(0.8, 0.5, "test"), ignore)
    assert decision.kind == kind
    if written is not None:
        assert [o.difficult for o in decision.annotation.objects] == written


def test_decision_refuses_a_manifest_that_does_not_match_the_file():
    from tsoda.loop.thresholds import Thresholds

    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        acceptance.decide(FOUND, [0.9, 0.8], Thresholds(0.8, 0.5, "test"), True)


def test_threshold_study_replays_a_round_against_hidden_truth(tmp_path):
    import json

    from tsoda.loop.thresholds import Thresholds
    from tsoda.simulation.threshold_study import load_round, main, replay

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
    from tsoda.simulation.threshold_study import main

    assert main(["--loop_dir", str(tmp_path), "--dataset_dir", str(tmp_path)]) == 2
    assert "no labelling manifest" in capsys.readouterr().err


def test_score_table_matches_in_score_order_as_coco_does():
    truth = (voc.VocObject("flame", (0, 0, 10, 10)),)
    found = [("flame", (0, 0, 10, 12), 0.9),   # IoU 0.83, the higher score: the match
             ("flame", (0, 0, 10, 10), 0.5)]   # IoU 1.0, but the box is taken
    assert score_table(found, truth) == [(0.9, True), (0.5, False)]


def test_score_table_counts_a_hit_at_the_iou_asked_for():
    truth = (voc.VocObject("flame", (0, 0, 10, 10)),)
    found = [("flame", (0, 0, 10, 4), 0.9)]  # IoU 0.4
    assert score_table(found, truth) == [(0.9, False)]
    assert score_table(found, truth, min_iou=0.3) == [(0.9, True)]


def test_precision_by_score_at_two_ious(tmp_path):
    """Red (0.9) is boxed exactly in one image and with IoU 0.4 in another; blue (0.7) has
    no label: precision above 0.8 is 1/2 at IoU 0.5 and 2/2 at IoU 0.3."""
    from auto_annotate.label_map import parse_label_map
    from tests.helpers import BLUE, LABEL_MAP, RED, FakeColorDetector, draw, save
    from tsoda.simulation.threshold_study import precision_by_score

    for name, truth in (("exact", (10, 10, 20, 20)), ("loose", (10, 10, 20, 35))):
        save(tmp_path / f"{name}.png", draw((64, 48), [(RED, (10, 10, 20, 20)),
                                                       (BLUE, (40, 30, 50, 40))]))
        voc.write_voc(tmp_path / f"{name}.xml", voc.VocAnnotation(
            f"{name}.png", 64, 48, objects=(voc.VocObject("flame", truth),)))
    rows = precision_by_score(FakeColorDetector(), parse_label_map(LABEL_MAP), tmp_path,
                              scores=(0.8, 0.5))
    assert rows == [
        {"score": ">= 0.80", "detections": 2, "found_share": "0.500",
         "precision_iou0.5": "0.500", "precision_iou0.3": "1.000"},
        {"score": ">= 0.50", "detections": 4, "found_share": "0.500",
         "precision_iou0.5": "0.250", "precision_iou0.3": "0.500"}]
