"""The TSODA loop refuses, before any training, what would make a round useless."""

from __future__ import annotations

import pytest

from auto_annotate.errors import AnnotateError
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


@pytest.mark.parametrize("content,problem", [
    ({}, r"no image to label \(supported: \.bmp \.jpeg \.jpg \.png \.tif \.tiff \.webp\); "
         r"the folder is empty"),
    ({"a.gif": b"x", "b.GIF": b"x", "c.heic": b"x", "notes.txt": b"x"},
     r"no image to label .*; ignored: 2 \.gif, 1 \.heic, 1 \.txt"),
    (None, r"folder does not exist"),
], ids=["empty", "unsupported_formats", "mistyped"])
def test_an_unlabelled_folder_without_images_is_refused_up_front(data, content, problem):
    folder = data / "U2"
    if content is not None:
        folder.mkdir()
        for name, payload in content.items():
            (folder / name).write_bytes(payload)
    with pytest.raises(AnnotateError, match=problem) as refused:
        make_loop(data, unlabeled_dir=folder).run()
    assert str(refused.value).startswith(str(folder))
    assert FakeTrainer(data / "calls.jsonl").calls() == []
    make_loop(data, max_rounds=1).run()  # the same work dir then starts with the right folder
    assert len(FakeTrainer(data / "calls.jsonl").calls()) == 2
