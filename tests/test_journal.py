"""The TSODA journal's file: its schema version, old journals, refusals, rows by name."""

from __future__ import annotations

import sqlite3

import pytest

from auto_annotate.errors import AnnotateError
from tests.loop_fakes import FakeTrainer, make_dataset
from tests.test_loop import _final_state, make_loop
from tsoda.errors import JournalError, TrainingError
from tsoda.loop.journal import (
    SCHEMA_VERSION,
    VERSION_KEY,
    ImageRow,
    Journal,
    RoundRow,
    Split,
    Stage,
    Status,
)
from tsoda.loop.rounds import TsodaLoop

# The tables as tsoda wrote them before the journal recorded a version, with the columns of
# images and rounds in another order than the code's dataclasses: read by name, not position.
UNVERSIONED = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (
    status TEXT NOT NULL, id TEXT PRIMARY KEY, boxes INTEGER, image TEXT NOT NULL, xml TEXT,
    split TEXT, round INTEGER, max_score REAL, min_score REAL);
CREATE TABLE rounds (
    stage TEXT, round INTEGER PRIMARY KEY, steps INTEGER NOT NULL, checkpoint TEXT,
    saved_model TEXT, metrics TEXT, accepted INTEGER, held_back INTEGER,
    started REAL NOT NULL, seconds REAL NOT NULL DEFAULT 0);
INSERT INTO meta VALUES ('settings', '{"seed": 3}');
INSERT INTO images (id, image, xml, status, split, round, min_score, max_score, boxes) VALUES
    ('L/a.png', 'L/a.png', 'L/a.xml', 'hand', 'test', NULL, NULL, NULL, NULL),
    ('U/b.png', 'U/b.png', 'W/labels/b.xml', 'auto', 'train', 1, 0.91, 0.97, 2),
    ('U/c.png', 'U/c.png', 'W/labels/c.xml', 'unlabelled', NULL, NULL, NULL, NULL, NULL);
INSERT INTO rounds (round, stage, steps, checkpoint, saved_model, metrics, accepted,
                    held_back, started, seconds) VALUES
    (1, 'accept', 100, 'ck1', 'sm1', '{"hand": {"map50": 0.5}}', 1, 0, 10.0, 4.0),
    (2, 'train', 150, 'ck2', NULL, NULL, NULL, NULL, 20.0, 1.5);
"""


@pytest.fixture()
def data(tmp_path):
    make_dataset(tmp_path)
    return tmp_path


def _unversioned(path):
    with sqlite3.connect(path) as db:
        db.executescript(UNVERSIONED)
    db.close()
    return path


def _stored_version(path):
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (VERSION_KEY,)).fetchone()
    db.close()
    return row


def test_a_new_journal_records_its_schema_version(tmp_path):
    Journal(tmp_path / "journal.sqlite").close()
    assert _stored_version(tmp_path / "journal.sqlite") == (str(SCHEMA_VERSION),)
    assert Journal(tmp_path / "journal.sqlite").get_meta(VERSION_KEY) == SCHEMA_VERSION


def test_an_unversioned_journal_is_read_by_column_name_and_stamped(tmp_path):
    path = _unversioned(tmp_path / "journal.sqlite")
    journal = Journal(path)
    assert _stored_version(path) == (str(SCHEMA_VERSION),)  # stamped: version 1 is today's
    assert journal.images() == [
        ImageRow("L/a.png", "L/a.png", "L/a.xml", Status.HAND, Split.TEST),
        ImageRow("U/b.png", "U/b.png", "W/labels/b.xml", Status.AUTO, Split.TRAIN, 1, 0.91,
                 0.97, 2),
        ImageRow("U/c.png", "U/c.png", "W/labels/c.xml", Status.UNLABELLED)]
    assert all(isinstance(row.status, Status) for row in journal.images())
    assert journal.rounds() == [
        RoundRow(1, Stage.ACCEPT, 100, "ck1", "sm1", {"hand": {"map50": 0.5}}, 1, 0, 10.0, 4.0),
        RoundRow(2, Stage.TRAIN, 150, "ck2", None, {}, None, None, 20.0, 1.5)]
    assert [r.next_stage for r in journal.rounds()] == [None, Stage.EXPORT]
    assert journal.counts() == {"hand": 1, "verified": 0, "auto": 1, "unlabelled": 1}
    assert journal.get_meta("settings") == {"seed": 3}


def test_enum_values_are_stored_as_the_same_text_as_before(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    journal.add_image(ImageRow("U/x.png", "x.png", "x.xml", Status.UNLABELLED))
    journal.update_image("U/x.png", status=Status.VERIFIED, split=Split.TEST)
    journal.start_round(1, 100)
    journal.finish_stage(1, Stage.RECORDS, 0.5)
    with sqlite3.connect(tmp_path / "journal.sqlite") as db:
        assert db.execute("SELECT status, split, typeof(status) FROM images").fetchall() == \
            [("verified", "test", "text")]
        assert db.execute("SELECT stage FROM rounds").fetchall() == [("records",)]
    db.close()
    assert journal.images("verified", "test")[0].status is Status.VERIFIED


def test_an_unknown_column_or_stored_status_is_refused(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    journal.add_image(ImageRow("U/x.png", "x.png", "x.xml", Status.UNLABELLED))
    with pytest.raises(ValueError, match="not journal columns: stauts"):
        journal.update_image("U/x.png", stauts=Status.AUTO)
    journal._db.execute("UPDATE images SET status = 'reviewed'")
    with pytest.raises(JournalError, match="unknown status 'reviewed'"):
        journal.images()


def test_a_status_of_another_kind_is_refused_before_it_is_stored(tmp_path):
    """The manifest's statuses are str enums too ("annotated"): the journal takes only its
    own image statuses and splits."""
    from auto_annotate.manifest import Status as Outcome

    journal = Journal(tmp_path / "journal.sqlite")
    with pytest.raises(ValueError, match=r"'annotated'.* is not a valid Status"):
        journal.add_image(ImageRow("U/x.png", "x.png", "x.xml", Outcome.ANNOTATED))
    journal.add_image(ImageRow("U/x.png", "x.png", "x.xml", "unlabelled"))
    with pytest.raises(ValueError, match="'validation' is not a valid Split"):
        journal.update_image("U/x.png", status=Status.AUTO, split="validation")
    assert [(r.status, r.split) for r in journal.images()] == [(Status.UNLABELLED, None)]


def _newer(path, version=7):
    journal = Journal(path)
    journal.set_meta(VERSION_KEY, version)
    journal.close()


@pytest.mark.parametrize("make,problem", [
    (_newer, f"written by journal schema version 7; this tsoda reads version "
             f"{SCHEMA_VERSION}: use the tsoda that wrote it, or a new --work_dir"),
    (lambda path: _newer(path, 0), "written by journal schema version 0;"),
    (lambda path: _newer(path, "1"), "written by journal schema version '1';"),
    (lambda path: path.write_bytes(b"labels: flame, smoke\n" * 200),
     "not a SQLite journal (file is not a database): move it away, or use a new --work_dir"),
    (lambda path: sqlite3.connect(path).execute("CREATE TABLE other (x)").connection.close(),
     "a SQLite database but not a TSODA journal (no meta table): use a new --work_dir"),
], ids=["newer", "zero", "text", "garbage", "other_database"])
def test_a_journal_this_tsoda_cannot_read_is_refused_in_one_line(tmp_path, make, problem):
    path = tmp_path / "W" / "journal.sqlite"
    path.parent.mkdir()
    make(path)
    before = path.read_bytes()
    with pytest.raises(JournalError) as refused:
        Journal(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message
    assert isinstance(refused.value, (TrainingError, AnnotateError))  # the CLI's one line
    assert path.read_bytes() == before  # left as it was


def test_the_loop_refuses_a_newer_journal_before_any_work(data):
    _newer(data / "W" / "journal.sqlite")
    with pytest.raises(JournalError, match=r"journal\.sqlite: written by journal schema version 7"):
        make_loop(data).run()
    assert FakeTrainer(data / "calls.jsonl").calls() == []


def test_a_run_with_an_unversioned_journal_resumes(data, tmp_path):
    reference = make_loop(data, work_dir=tmp_path / "ref",
                          trainer=FakeTrainer(tmp_path / "ref_calls.jsonl"))
    reason = reference.run()
    first = make_loop(data, max_rounds=1)
    first.run()
    first.journal._db.execute("DELETE FROM meta WHERE key = ?", (VERSION_KEY,))
    first.journal.close()  # now as an older tsoda left it after round 1
    assert _stored_version(data / "W" / "journal.sqlite") is None
    resumed = make_loop(data)
    assert resumed.journal.get_meta(VERSION_KEY) == SCHEMA_VERSION
    assert resumed.run() == reason
    assert _final_state(resumed) == _final_state(reference)
    trained = [c["round_dir"][-2:] for c in FakeTrainer(data / "calls.jsonl").calls()
               if c["call"] == "train"]
    assert trained == ["01", "02", "03"]  # round 1 was not trained again


def test_every_stage_has_its_method_in_the_dispatch_table(data):
    loop = make_loop(data)
    table = loop._stage_methods()
    assert list(table) == list(Stage)
    for stage, method in table.items():
        assert method.__self__ is loop
        assert method.__func__ is getattr(TsodaLoop, f"_stage_{stage.value}")
