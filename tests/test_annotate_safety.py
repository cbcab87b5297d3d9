"""Bad model output, edited labels, interruptions and manifest failures in auto_annotate."""

from __future__ import annotations

import numpy as np
import pytest

from auto_annotate.annotate import Options, annotate_folder
from auto_annotate.detections import Detections
from auto_annotate.label_map import parse_label_map
from tests.helpers import LABEL_MAP, RED, FakeColorDetector, draw, save

LABELS = parse_label_map(LABEL_MAP)
QUIET = {"progress": False, "model_id": "fake"}


def make_images(folder, count, size=(40, 30)):
    for index in range(count):
        save(folder / f"img{index}.png", draw(size, [(RED, (index, 2, index + 10, 12))]))
    return folder


class BadValueDetector(FakeColorDetector):
    """The colour detector; on images ``bad_width`` wide, the first box's xmin (``where``
    "box") or its score ("score") becomes ``value``."""

    def __init__(self, bad_width: int, where: str, value: float) -> None:
        super().__init__()
        self.bad_width, self.where, self.value = bad_width, where, value

    def predict(self, images):
        results = super().predict(images)
        for index, image in enumerate(images):
            if image.shape[1] != self.bad_width:
                continue
            found = results[index]
            boxes, scores = np.array(found.boxes), np.array(found.scores)
            if self.where == "box":
                boxes[0, 0] = self.value
            else:
                scores[0] = self.value
            results[index] = Detections(boxes, scores, found.class_ids)
        return results


@pytest.mark.parametrize(("where", "value"), [("box", np.nan), ("box", np.inf),
                                              ("box", -np.inf), ("score", np.nan),
                                              ("score", np.inf)])
def test_non_finite_model_output_fails_that_image_only(tmp_path, where, value):
    imgs = make_images(tmp_path, 3)
    save(imgs / "bad.png", draw((50, 30), [(RED, (5, 5, 20, 20))]))
    for attempt in range(2):  # a rerun does not stop at the same image either
        summary = annotate_folder(BadValueDetector(50, where, value), LABELS, imgs,
                                  options=Options(**QUIET))
        assert summary.annotated == (3 if attempt == 0 else 0)
        assert len(summary.failed) == 1 and summary.exit_code == 1
        path, reason = summary.failed[0]
        assert path.endswith("bad.png") and "non-finite" in reason and where in reason
    assert not (imgs / "bad.xml").exists()


def _fake_saved_model(folder, graph: bytes, index: bytes):
    (folder / "variables").mkdir(parents=True, exist_ok=True)
    (folder / "saved_model.pb").write_bytes(graph)
    (folder / "variables" / "variables.index").write_bytes(index)
    return folder


def test_model_is_identified_by_content_not_path(tmp_path, label_map_path):
    from auto_annotate import AutoAnnotate

    imgs = make_images(tmp_path / "imgs", 1)
    model = _fake_saved_model(tmp_path / "model", b"graph", b"index v1")

    def model_id() -> str:
        return AutoAnnotate(model, label_map_path, imgs, progress=False).options.model_id

    first = model_id()
    assert model_id() == first  # same files, same identity
    _fake_saved_model(model, b"graph", b"index v2")  # a better model exported in its place
    second = model_id()
    assert second != first
    _fake_saved_model(model, b"graph v2", b"index v2")
    assert model_id() not in (first, second)
    moved = _fake_saved_model(tmp_path / "elsewhere", b"graph v2", b"index v2")
    assert AutoAnnotate(moved, label_map_path, imgs).options.model_id == model_id()


def test_a_new_model_in_the_same_folder_relabels_images_found_empty(tmp_path):
    imgs = tmp_path
    save(imgs / "empty.png", draw((40, 30)))
    annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    same = annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    assert same.skipped == {"done": 1}
    newer = annotate_folder(FakeColorDetector(), LABELS, imgs,
                            options=Options(progress=False, model_id="sha256:other"))
    assert newer.empty == 1 and not newer.skipped
