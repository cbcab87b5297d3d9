"""The annotation pipeline with a fake detector: labels never lost, resume, batching."""

from __future__ import annotations

import json
import os
import threading

import pytest

from auto_annotate import annotate, predict, voc
from auto_annotate.annotate import Options, annotate_folder
from auto_annotate.label_map import parse_label_map
from tests.helpers import LABEL_MAP, RED, FakeColorDetector, draw, save

LABELS = parse_label_map(LABEL_MAP)
QUIET = {"progress": False, "model_id": "fake"}


def make_images(folder, count, size=(40, 30)):
    for index in range(count):
        save(folder / f"img{index}.png", draw(size, [(RED, (index, 2, index + 10, 12))]))
    return folder


def test_existing_xml_is_kept_unless_overwrite_and_verified_is_never_replaced(tmp_path):
    imgs = make_images(tmp_path, 3)
    annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    hand = voc.VocAnnotation("img0.png", 40, 30, objects=(voc.VocObject("smoke", (0, 0, 5, 5)),))
    voc.write_voc(imgs / "img1.xml", voc.VocAnnotation(**{**hand.__dict__, "verified": True}))
    before = {name: (imgs / name).read_bytes() for name in ("img0.xml", "img1.xml")}
    (imgs / "img2.xml").unlink()

    summary = annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    assert summary.skipped == {"existing": 1, "verified": 1} and summary.annotated == 1
    assert {n: (imgs / n).read_bytes() for n in before} == before

    voc.write_voc(imgs / "img0.xml", hand)  # a person edits what auto_annotate wrote
    summary = annotate_folder(FakeColorDetector(), LABELS, imgs,
                              options=Options(overwrite=True, **QUIET))
    assert summary.skipped == {"verified": 1, "edited": 1} and summary.annotated == 1
    assert (imgs / "img1.xml").read_bytes() == before["img1.xml"]
    assert voc.read_voc(imgs / "img0.xml") == hand


def test_malformed_existing_xml_is_not_overwritten(tmp_path):
    imgs = make_images(tmp_path, 1)
    (imgs / "img0.xml").write_text("<annotation><broken")
    summary = annotate_folder(FakeColorDetector(), LABELS, imgs,
                              options=Options(overwrite=True, **QUIET))
    assert summary.exit_code == 1 and "not overwriting it" in summary.failed[0][1]
    assert (imgs / "img0.xml").read_text() == "<annotation><broken"


def test_a_file_verified_during_the_run_is_not_replaced(tmp_path, monkeypatch):
    imgs = make_images(tmp_path, 1)
    verified = voc.VocAnnotation("img0.png", 40, 30, verified=True)
    real_finish = annotate.finish_image

    def reviewer_saves_first(task, *args):  # LabelImg saves while the model runs
        voc.write_voc(task.xml, verified)
        return real_finish(task, *args)

    monkeypatch.setattr(annotate, "finish_image", reviewer_saves_first)
    summary = annotate_folder(FakeColorDetector(), LABELS, imgs,
                              options=Options(overwrite=True, **QUIET))
    assert summary.skipped == {"verified": 1} and voc.read_voc(imgs / "img0.xml") == verified


def test_interrupted_run_resumes_without_redoing_work(tmp_path):
    imgs = make_images(tmp_path, 5)
    save(imgs / "empty.png", draw((40, 30)))
    detector = FakeColorDetector(fail_on=4, error=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        annotate_folder(detector, LABELS, imgs, options=Options(**QUIET))
    done = sorted(p.name for p in imgs.glob("*.xml"))
    assert done == ["img0.xml", "img1.xml"]
    assert not list(imgs.glob(".*.tmp"))
    records = [json.loads(line) for line in (imgs / "auto_annotate_manifest.jsonl").open()]
    assert [r["image"] for r in records] == ["empty.png", "img0.png", "img1.png"]

    second = FakeColorDetector()
    summary = annotate_folder(second, LABELS, imgs, options=Options(**QUIET))
    assert summary.skipped == {"existing": 2, "done": 1} and summary.annotated == 3
    assert len(second.batches) == 3  # only the images not done before were run
    assert sorted(p.name for p in imgs.glob("*.xml")) == [f"img{i}.xml" for i in range(5)]


def test_write_empty_and_a_changed_threshold_reprocess_empty_images(tmp_path):
    imgs = tmp_path
    save(imgs / "empty.png", draw((40, 30)))
    annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    again = annotate_folder(FakeColorDetector(), LABELS, imgs,
                            options=Options(threshold=0.3, **QUIET))
    assert again.empty == 1 and not again.skipped
    written = annotate_folder(FakeColorDetector(), LABELS, imgs,
                              options=Options(write_empty=True, **QUIET))
    assert written.empty_written == 1 and voc.read_voc(imgs / "empty.xml").objects == ()


def test_recursive_output_mirrors_sub_folders(tmp_path):
    imgs = tmp_path / "imgs"
    make_images(imgs / "cam1", 1)
    make_images(imgs / "cam2", 1)
    flat = annotate_folder(FakeColorDetector(), LABELS, imgs, tmp_path / "out0",
                           Options(**QUIET))
    assert flat.found == 0
    summary = annotate_folder(FakeColorDetector(), LABELS, imgs, tmp_path / "out",
                              Options(recursive=True, **QUIET))
    assert summary.annotated == 2 and summary.exit_code == 0
    assert (tmp_path / "out" / "cam1" / "img0.xml").exists()
    assert (tmp_path / "out" / "cam2" / "img0.xml").exists()
    assert voc.read_voc(tmp_path / "out" / "cam2" / "img0.xml").folder == "cam2"


def test_batches_group_equal_sizes_up_to_the_batch_size(tmp_path):
    imgs = make_images(tmp_path, 5, size=(40, 30))
    for index in range(3):
        save(imgs / f"wide{index}.png", draw((50, 30), [(RED, (1, 1, 5, 5))]))
    detector = FakeColorDetector(max_batch=2)
    summary = annotate_folder(detector, LABELS, imgs, options=Options(**QUIET))
    assert summary.annotated == 8
    assert all(len(batch) <= 2 and len(set(batch)) == 1 for batch in detector.batches)
    assert sorted(len(batch) for batch in detector.batches) == [1, 1, 2, 2, 2]


def test_a_failing_batch_fails_its_images_only(tmp_path):
    imgs = make_images(tmp_path, 4)
    summary = annotate_folder(FakeColorDetector(fail_on=2), LABELS, imgs,
                              options=Options(**QUIET))
    assert summary.annotated == 3 and len(summary.failed) == 1
    assert "model failed: RuntimeError: fake model failure" in summary.failed[0][1]
    assert summary.exit_code == 1


def test_decoding_runs_ahead_in_worker_threads(tmp_path, monkeypatch):
    imgs = make_images(tmp_path, 12)
    decoded_in, real_decode = [], predict.decode_image

    def spy(path):
        decoded_in.append(threading.current_thread() is threading.main_thread())
        return real_decode(path)

    class Watcher(FakeColorDetector):
        def predict(self, images):
            self.decoded_before.append(len(decoded_in))
            return super().predict(images)

    monkeypatch.setattr(predict, "decode_image", spy)
    detector = Watcher(max_batch=1)
    detector.decoded_before = []
    annotate_folder(detector, LABELS, imgs, options=Options(workers=2, **QUIET))
    assert not any(decoded_in)  # never decoded on the main thread
    assert detector.decoded_before[0] > 1  # the next images were decoding before the first call


def test_write_failure_keeps_the_old_label_and_leaves_no_temp_file(tmp_path, monkeypatch):
    imgs = make_images(tmp_path, 1)
    annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    before = (imgs / "img0.xml").read_bytes()

    def crash(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    summary = annotate_folder(FakeColorDetector(), LABELS, imgs,
                              options=Options(overwrite=True, **QUIET))
    assert "disk full" in summary.failed[0][1]
    assert (imgs / "img0.xml").read_bytes() == before
    assert sorted(p.name for p in imgs.iterdir() if p.name.endswith(".tmp")) == []


def test_new_files_are_readable_by_others(tmp_path):
    imgs = make_images(tmp_path, 1)
    annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    assert (imgs / "img0.xml").stat().st_mode & 0o044 == 0o044 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_manifest_line_cut_short_by_a_crash_is_skipped(tmp_path):
    imgs = make_images(tmp_path, 2)
    (imgs / "auto_annotate_manifest.jsonl").write_text('{"image": "img0.png", "sta')
    annotate_folder(FakeColorDetector(), LABELS, imgs, options=Options(**QUIET))
    records = annotate.read_manifest(imgs / "auto_annotate_manifest.jsonl")
    assert set(records) == {"img0.png", "img1.png"}


def test_existing_class_list_keeps_its_lines(tmp_path):
    (tmp_path / "predefined_classes.txt").write_text("dog\nFlame\n")
    annotate.write_predefined_classes(tmp_path, LABELS)
    assert (tmp_path / "predefined_classes.txt").read_text() == "dog\nFlame\nsmoke\n"


def test_threshold_outside_range_is_refused():
    with pytest.raises(ValueError, match="threshold"):
        Options(threshold=1.01)


def test_unwritable_xml_folder_is_one_clear_error(tmp_path):
    imgs = make_images(tmp_path / "imgs", 1)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(annotate.AnnotateError, match="cannot write to the XML folder"):
        annotate_folder(FakeColorDetector(), LABELS, imgs, blocker / "xml", Options(**QUIET))


def test_labels_are_written_off_the_model_thread_and_accounted_in_order(tmp_path, monkeypatch):
    imgs = make_images(tmp_path, 6)
    events, real_finish = [], annotate.finish_image
    release, released = threading.Event(), []

    def slow_finish(task, *args):
        events.append(("write", task.image.name, threading.current_thread().name))
        if task.image.name == "img0.png":
            released.append(release.wait(3))  # held until the model has moved on
        return real_finish(task, *args)

    class Watcher(FakeColorDetector):
        def predict(self, images):
            events.append(("model", len(images), threading.current_thread().name))
            if len(self.batches) == 1:
                release.set()
            return super().predict(images)

    monkeypatch.setattr(annotate, "finish_image", slow_finish)
    summary = annotate_folder(Watcher(max_batch=1), LABELS, imgs, options=Options(**QUIET))
    assert summary.annotated == 6
    model_threads = {e[2] for e in events if e[0] == "model"}
    write_threads = {e[2] for e in events if e[0] == "write"}
    assert model_threads == {threading.main_thread().name}
    assert threading.main_thread().name not in write_threads
    assert released == [True]  # the model ran again while the first label was being written
    records = [json.loads(line) for line in (imgs / "auto_annotate_manifest.jsonl").open()]
    assert [r["image"] for r in records] == [f"img{i}.png" for i in range(6)]
