"""The manifest: its typed record, the one writer and reader of its JSON lines, and the
reader of the file and the shards a Beam run writes beside it."""

from __future__ import annotations

import json
import logging

import pytest

from auto_annotate.manifest import (
    MANIFEST_NAME,
    ManifestRecord,
    ManifestWriter,
    Status,
    read_manifest,
    shard_prefix,
)

# Lines as the run writes them (key order included), one per kind of record
ANNOTATED = (
    '{"image": "sub/a.jpg", "width": 640, "height": 480, "orientation": 6, '
    '"boxes": [[11, 6, 30, 25], [1, 1, 640, 480]], "class_ids": [1, 2], "scores": [0.9, 0.7], '
    '"below_threshold": 1, "max_score_below": 0.31, "model": "ab12", "threshold": 0.5, '
    '"time": "2025-01-02T03:04:05+0100", "status": "annotated", "classes": ["flame", "smoke"], '
    '"errors": [], "xml": "a.xml", "xml_sha256": "' + "0" * 64 + '"}')
EMPTY = (
    '{"image": "é.png", "width": 60, "height": 40, "orientation": 1, "boxes": [], '
    '"class_ids": [], "scores": [], "below_threshold": 0, "max_score_below": null, '
    '"model": "ab12", "threshold": 0.5, "time": "2025-01-02T03:04:05+0000", '
    '"status": "empty", "classes": [], "errors": ["class id 9 is not in the label map; box '
    'dropped"], "xml": null}')
FAILED = ('{"image": "b.png", "status": "failed", "error": "cannot decode image", '
          '"time": "2025-01-02T03:04:05+0000"}')


def _write(path, *records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _rec(image, marker, time=None, status="annotated"):
    """A record whose ``model`` marks which line won."""
    return {"image": image, "status": status, "model": marker,
            **({"time": time} if time else {})}


def test_status_values_are_the_manifest_strings():
    assert [s.value for s in Status] == ["annotated", "empty", "failed"]
    assert Status("empty") is Status.EMPTY and f"{Status.FAILED}" == "failed"
    assert Status.ANNOTATED == "annotated"


@pytest.mark.parametrize("line", [ANNOTATED, EMPTY, FAILED])
def test_a_line_reads_into_a_record_and_writes_back_byte_for_byte(line):
    record = ManifestRecord.from_line(line)
    assert record.to_line() == line
    assert ManifestRecord.from_line(record.to_line()) == record


def test_the_record_has_typed_fields():
    record = ManifestRecord.from_line(ANNOTATED)
    assert record.status is Status.ANNOTATED and (record.width, record.height) == (640, 480)
    assert record.boxes == ((11, 6, 30, 25), (1, 1, 640, 480))
    assert record.classes == ("flame", "smoke") and record.scores == (0.9, 0.7)
    failed = ManifestRecord.from_line(FAILED)
    assert failed.status is Status.FAILED and failed.error == "cannot decode image"
    assert failed.boxes == () and failed.xml is None


@pytest.mark.parametrize("line,expected", [
    # a failed record before records carried their time
    ('{"image": "b.png", "status": "failed", "error": "bad"}',
     ManifestRecord("b.png", Status.FAILED, error="bad")),
    # a labelled record before the XML's SHA-256 was recorded
    ('{"image": "a.png", "width": 40, "height": 30, "orientation": 1, "boxes": [[1, 2, 3, 4]], '
     '"class_ids": [1], "scores": [0.9], "below_threshold": 0, "max_score_below": null, '
     '"model": "m", "threshold": 0.5, "time": "2024-05-01T10:00:00+0000", '
     '"status": "annotated", "classes": ["flame"], "errors": [], "xml": "a.xml"}',
     ManifestRecord("a.png", Status.ANNOTATED, time="2024-05-01T10:00:00+0000", width=40,
                    height=30, orientation=1, boxes=((1, 2, 3, 4),), class_ids=(1,),
                    classes=("flame",), scores=(0.9,), model="m", threshold=0.5,
                    xml="a.xml")),
    # keys a later version might add are ignored
    ('{"image": "c.png", "status": "empty", "model": "m", "threshold": 0.3, "new_key": [1]}',
     ManifestRecord("c.png", Status.EMPTY, model="m", threshold=0.3)),
])
def test_older_and_newer_lines_read(line, expected):
    assert ManifestRecord.from_line(line) == expected


@pytest.mark.parametrize("line,problem", [
    ('{"image": "a.png", "sta', "Unterminated string"),
    ('["a.png"]', "not a JSON object"),
    ('{"status": "empty"}', "no image name"),
    ('{"image": "a.png", "status": "skipped"}', "unknown status 'skipped'"),
    ('{"image": "a.png", "status": "empty", "scores": [0.5, "high"]}', "scores"),
    ('{"image": "a.png", "status": "empty", "boxes": [[1, 2, 3, 4.5]]}', "boxes"),
    ('{"image": "a.png", "status": "empty", "width": "40"}', "width"),
])
def test_a_line_that_is_no_record_is_refused_saying_why(line, problem):
    with pytest.raises(ValueError, match=problem):
        ManifestRecord.from_line(line)


def test_lines_that_are_no_record_are_skipped_with_a_warning(tmp_path, caplog):
    lines = [FAILED, '{"image": "x.png", "status": "weird"}', "", EMPTY, '{"image": "a.png", "sta']
    (tmp_path / MANIFEST_NAME).write_text("\n".join(lines), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="auto_annotate.manifest"):
        records = read_manifest(tmp_path / MANIFEST_NAME)
    assert set(records) == {"b.png", "é.png"}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and "line 2 is not a manifest record" in warnings[0]
    assert "line 5 is not a manifest record" in warnings[1]


def test_the_writer_appends_one_line_per_record_after_a_line_cut_short(tmp_path):
    path = tmp_path / MANIFEST_NAME
    path.write_text(FAILED + '\n{"image": "a.png", "sta', encoding="utf-8")
    with ManifestWriter(path) as writer:
        assert writer.append(ManifestRecord.from_line(ANNOTATED))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == FAILED and lines[2] == ANNOTATED
    assert set(read_manifest(path)) == {"b.png", "sub/a.jpg"}


def test_within_one_file_the_last_line_counts_whatever_its_time(tmp_path):
    _write(tmp_path / MANIFEST_NAME, _rec("a.png", "first", "2025-01-02T00:00:00+0000"),
           _rec("a.png", "last", "2025-01-01T00:00:00+0000", "empty"),
           _rec("b.png", "", status="failed"))
    records = read_manifest(tmp_path / MANIFEST_NAME)
    assert records["a.png"].model == "last" and records["a.png"].status is Status.EMPTY
    assert records["b.png"].status is Status.FAILED


@pytest.mark.parametrize("main_time,shard_time,winner", [
    ("2025-01-01T10:00:00+0000", "2025-01-01T11:00:00+0000", "shard"),
    ("2025-01-01T12:00:00+0000", "2025-01-01T11:00:00+0000", "main"),
    ("2025-01-01T13:00:00+0200", "2025-01-01T11:30:00+0000", "shard"),  # 11:00 UTC
    ("2025-01-01T11:00:00+0000", "2025-01-01T11:00:00+0000", "shard"),  # tie: shard after
    (None, "2025-01-01T11:00:00+0000", "shard"),  # an old record without time is oldest
])
def test_between_files_the_latest_record_counts(tmp_path, main_time, shard_time, winner):
    _write(tmp_path / MANIFEST_NAME, _rec("a.png", "main", main_time), _rec("m.png", "x"))
    _write(tmp_path / f"{shard_prefix('20250101T000000Z-ab12')}-00000-of-00002.jsonl",
           _rec("a.png", "shard", shard_time))
    _write(tmp_path / f"{shard_prefix('20250101T000000Z-ab12')}-00001-of-00002.jsonl",
           _rec("s.png", "y", shard_time))
    records = read_manifest(tmp_path / MANIFEST_NAME)
    assert records["a.png"].model == winner
    assert set(records) == {"a.png", "m.png", "s.png"}


def test_shards_alone_are_read_and_later_runs_win_ties(tmp_path):
    stamp = "2025-01-01T11:00:00+0000"
    _write(tmp_path / f"{shard_prefix('20250101T110000Z-aaaa')}-00000-of-00001.jsonl",
           _rec("a.png", "first", stamp))
    (tmp_path / f"{shard_prefix('20250101T110001Z-bbbb')}-00000-of-00001.jsonl").write_text(
        json.dumps(_rec("a.png", "second", stamp)) + '\n{"image": "cut sh')
    assert read_manifest(tmp_path / MANIFEST_NAME)["a.png"].model == "second"
    assert read_manifest(tmp_path / "elsewhere.jsonl") == {}


@pytest.mark.parametrize("scores,keys", [
    ([0.9, 0.2], ["image", "width", "height", "orientation", "boxes", "class_ids",
                         "scores", "below_threshold", "max_score_below", "model", "threshold",
                         "time", "status", "classes", "errors", "xml", "xml_sha256"]),
    ([0.2], ["image", "width", "height", "orientation", "boxes", "class_ids", "scores",
                    "below_threshold", "max_score_below", "model", "threshold", "time",
                    "status", "classes", "errors", "xml"]),
])
def test_the_labelling_records_keep_their_keys_and_values(scores, keys):
    import numpy as np

    from auto_annotate.detections import Detections
    from auto_annotate.images import DecodedImage
    from auto_annotate.label_map import parse_label_map
    from auto_annotate.labelling import Options, failed_record, make_label
    from tests.helpers import LABEL_MAP

    image = DecodedImage("a.png", np.zeros((40, 60, 3), np.uint8), (40, 60), 1, 3)
    detections = Detections(np.array([[10.0, 5.0, 30.0, 25.0]] * len(scores), np.float32),
                            np.array(scores, np.float32), np.ones(len(scores), np.int64))
    label = make_label("a.png", "/x/a.png", "a.xml", image, detections,
                       parse_label_map(LABEL_MAP), Options(model_id="m"))
    data = json.loads(label.record.to_line())
    assert list(data) == keys
    assert data["width"] == 60 and data["height"] == 40 and data["below_threshold"] == 1
    assert data["max_score_below"] == pytest.approx(0.2)
    if len(scores) > 1:
        assert data["status"] == "annotated" and data["boxes"] == [[11, 6, 30, 25]]
        assert data["classes"] == ["flame"] and data["xml"] == "a.xml"
    else:
        assert data["status"] == "empty" and data["xml"] is None and label.text is None
    failed = json.loads(failed_record("b.png", "bad").to_line())
    assert list(failed) == ["image", "status", "error", "time"]
    assert failed["status"] == "failed" and failed["error"] == "bad"
