"""Bad model output, edited labels, interruptions and manifest failures in auto_annotate."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from auto_annotate import annotate, voc
from auto_annotate.annotate import Options, annotate_folder
from auto_annotate.detections import Detections
from auto_annotate.errors import AnnotateError
from auto_annotate.manifest import MANIFEST_NAME, ManifestRecord, read_manifest
from tests.helpers import RED, FakeColorDetector, draw, save
from tests.test_annotate_pipeline import LABELS, QUIET, make_images


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


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _records(folder) -> dict[str, ManifestRecord]:
    return read_manifest(folder / MANIFEST_NAME)


def test_overwrite_keeps_files_edited_by_a_person_or_written_by_others(tmp_path):
    imgs = make_images(tmp_path, 4)
    annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    records = _records(imgs)
    for name in ("img0", "img1", "img2", "img3"):
        assert records[f"{name}.png"].xml_sha256 == _sha256(imgs / f"{name}.xml")
    edited = voc.VocAnnotation("img1.png", 40, 30, objects=(voc.VocObject("smoke", (1, 1, 9, 9)),))
    voc.write_voc(imgs / "img1.xml", edited)  # saved with Ctrl+S, not verified
    (imgs / "img3.xml").unlink()
    voc.write_voc(imgs / "img3.xml", edited)  # a label from elsewhere, no record of ours
    records.pop("img3.png")
    (imgs / MANIFEST_NAME).write_text("".join(r.to_line() + "\n" for r in records.values()))
    kept = {name: (imgs / name).read_bytes() for name in ("img1.xml", "img3.xml")}

    summary = annotate_folder(FakeColorDetector(), LABELS, imgs,
                              options=Options(overwrite=True, **QUIET))
    assert summary.annotated == 2 and summary.skipped == {"edited": 1, "foreign": 1}
    assert {name: (imgs / name).read_bytes() for name in kept} == kept
    assert "edited" in summary.format() and "not written by auto_annotate" in summary.format()


def test_a_file_edited_during_an_overwrite_run_is_not_replaced(tmp_path, monkeypatch):
    imgs = make_images(tmp_path, 1)
    annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    real_finish = annotate.finish_image
    edited = voc.VocAnnotation("img0.png", 40, 30, objects=(voc.VocObject("smoke", (1, 1, 9, 9)),))

    def reviewer_saves_first(task, *args):  # LabelImg saves (Ctrl+S) while the model runs
        voc.write_voc(task.xml, edited)
        return real_finish(task, *args)

    monkeypatch.setattr(annotate, "finish_image", reviewer_saves_first)
    summary = annotate_folder(FakeColorDetector(), LABELS, imgs,
                              options=Options(overwrite=True, **QUIET))
    assert summary.skipped == {"edited": 1} and voc.read_voc(imgs / "img0.xml") == edited


@pytest.mark.parametrize("point", ["before_xml", "after_xml"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_leaves_no_label_without_its_record(tmp_path, point, sig):
    imgs = make_images(tmp_path / "imgs", 4)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    process = subprocess.Popen([sys.executable, "-m", "tests.annotate_process", str(imgs),
                                point, "img2.png"], cwd=repo, env=env)
    deadline = time.monotonic() + 60
    while not (imgs / "at_point").exists() and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before reaching the point"
        time.sleep(0.05)
    process.send_signal(sig)
    process.wait(10)
    records = _records(imgs)
    for xml in imgs.glob("*.xml"):  # every label on disk has its record, with its scores
        record = records[f"{xml.stem}.png"]
        assert record.xml_sha256 == _sha256(xml) and record.scores == (0.9,)
    assert (imgs / "img2.xml").exists() == (point == "after_xml")

    summary = annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    assert summary.exit_code == 0 and summary.processed + sum(summary.skipped.values()) == 4
    records = _records(imgs)
    assert all(records[f"img{i}.png"].xml_sha256 == _sha256(imgs / f"img{i}.xml")
               for i in range(4))


def test_manifest_that_cannot_be_opened_is_one_clear_error(tmp_path):
    imgs = make_images(tmp_path, 1)
    (imgs / MANIFEST_NAME).mkdir()  # not writable as a file, even for root
    with pytest.raises(AnnotateError, match="cannot write the manifest"):
        annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    assert not (imgs / "img0.xml").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a full disk)")
def test_full_disk_for_the_manifest_stops_the_run_with_one_error(tmp_path, capsys):
    imgs = make_images(tmp_path, 2)
    annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    before = {p.name: p.read_bytes() for p in imgs.glob("*.xml")}
    make_images(tmp_path / "more", 3)
    for path in (tmp_path / "more").iterdir():
        path.rename(imgs / f"new_{path.name}")
    (imgs / MANIFEST_NAME).unlink()
    (imgs / MANIFEST_NAME).symlink_to("/dev/full")  # every write: no space left on device

    summary = annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    assert summary.exit_code == 1 and summary.error is not None
    assert "cannot write the manifest" in summary.error and "No space left" in summary.error
    assert summary.annotated == 0 and not list(imgs.glob("new_*.xml"))  # no label unrecorded
    assert {p.name: p.read_bytes() for p in imgs.glob("*.xml")} == before
    assert "cannot write the manifest" in summary.format()


def test_unreadable_existing_xml_is_its_own_skip_reason_naming_the_file(tmp_path, caplog):
    imgs = make_images(tmp_path, 2)
    (imgs / "img0.xml").write_text("<annotation><broken")
    summary = annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    assert summary.skipped == {"unreadable": 1} and summary.annotated == 1
    assert "existing label file unreadable, kept" in summary.format()
    assert "img0.xml" in caplog.text and (imgs / "img0.xml").read_text() == "<annotation><broken"


def test_webp_and_tiff_are_labelled_like_other_images(tmp_path):
    for suffix in ("webp", "tif", "TIFF"):
        save(tmp_path / f"photo_{suffix}.{suffix}", draw((40, 30), [(RED, (2, 2, 12, 12))]),
             **({"lossless": True} if suffix == "webp" else {}))
    summary = annotate_folder(FakeColorDetector(), LABELS, tmp_path, options=Options(**QUIET))
    assert summary.found == 3 and summary.annotated == 3 and summary.exit_code == 0


def test_a_folder_without_supported_images_warns_and_names_the_ignored_formats(tmp_path):
    save(tmp_path / "anim.gif", draw((40, 30)))
    (tmp_path / "photo.heic").write_bytes(b"not really")
    (tmp_path / "notes.txt").write_text("x")
    summary = annotate_folder(FakeColorDetector(), LABELS, tmp_path, options=Options(**QUIET))
    assert summary.found == 0 and summary.exit_code == 1
    text = summary.format()
    assert "no supported image" in text and ".gif" in text and ".heic" in text
    assert ".txt" not in text


def test_broken_symbolic_links_are_reported(tmp_path):
    make_images(tmp_path, 1)
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    summary = annotate_folder(FakeColorDetector(), LABELS, tmp_path, options=Options(**QUIET))
    assert summary.annotated == 1 and summary.exit_code == 1
    [(path, reason)] = summary.failed
    assert path.endswith("gone.jpg") and "broken symbolic link" in reason


def _failing_model(path):
    """A SavedModel with the contract's signature whose graph fails on every image."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def detect(input_tensor):
        values = tf.reshape(tf.cast(input_tensor, tf.float32), [-1, 7])
        return {"detection_boxes": tf.zeros([1, 1, 4]) + values[0, 0],
                "detection_scores": tf.zeros([1, 1]), "detection_classes": tf.ones([1, 1])}

    module = tf.Module()
    module.detect = detect
    tf.saved_model.save(module, str(path), signatures={"serving_default": detect})
    return path


def test_a_tensorflow_error_keeps_its_cause_line(tmp_path, label_map_path, capsys):
    from auto_annotate.cli import main

    imgs = make_images(tmp_path / "imgs", 1)
    model = _failing_model(tmp_path / "model")
    assert main(["--saved_model_path", str(model), "--label_map_path", str(label_map_path),
                 "--imgs_path", str(imgs), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "Input to reshape is a tensor with" in out and "Graph execution error" not in out
