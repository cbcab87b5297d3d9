"""The manifest reader: the file and the shards a Beam run writes beside it."""

from __future__ import annotations

import json

import pytest

from auto_annotate.manifest import MANIFEST_NAME, read_manifest, shard_prefix


def _write(path, *records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _rec(image, status, time=None, **more):
    return {"image": image, "status": status, **({"time": time} if time else {}), **more}


def test_within_one_file_the_last_line_counts_whatever_its_time(tmp_path):
    _write(tmp_path / MANIFEST_NAME, _rec("a.png", "annotated", "2025-01-02T00:00:00+0000"),
           _rec("a.png", "empty", "2025-01-01T00:00:00+0000"), _rec("b.png", "failed"))
    records = read_manifest(tmp_path / MANIFEST_NAME)
    assert records["a.png"]["status"] == "empty" and records["b.png"]["status"] == "failed"


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
    assert records["a.png"]["status"] == winner
    assert set(records) == {"a.png", "m.png", "s.png"}


def test_shards_alone_are_read_and_later_runs_win_ties(tmp_path):
    stamp = "2025-01-01T11:00:00+0000"
    _write(tmp_path / f"{shard_prefix('20250101T110000Z-aaaa')}-00000-of-00001.jsonl",
           _rec("a.png", "first", stamp))
    (tmp_path / f"{shard_prefix('20250101T110001Z-bbbb')}-00000-of-00001.jsonl").write_text(
        json.dumps(_rec("a.png", "second", stamp)) + '\n{"image": "cut sh')
    assert read_manifest(tmp_path / MANIFEST_NAME)["a.png"]["status"] == "second"
    assert read_manifest(tmp_path / "elsewhere.jsonl") == {}
