"""The TSODA loop refuses, before any training, what would make a round useless."""

from __future__ import annotations

import pytest

from tests.loop_fakes import FakeTrainer, make_dataset
from tests.test_loop import make_loop
from tsoda.errors import TrainingError


@pytest.fixture()
def data(tmp_path):
    make_dataset(tmp_path)
    return tmp_path


def test_hand_labels_that_all_fail_conversion_are_refused_before_training(data):
    for xml in (data / "L").glob("*.xml"):  # sizes that match no image: every file skipped
        xml.write_text(xml.read_text().replace("<width>64</width>", "<width>99</width>"))
    tsoda = make_loop(data)
    with pytest.raises(TrainingError, match=r"round 1: no training example: all 4 labelled "
                                            r"training images failed to convert"):
        tsoda.run()
    assert FakeTrainer(data / "calls.jsonl").calls() == []
    assert not list((data / "W" / "rounds" / "01").glob("train.record*"))
