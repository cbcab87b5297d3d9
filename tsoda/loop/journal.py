"""The TSODA journal: every image's status and every round's progress, in SQLite.

SQLite commits atomically, so a process killed at any moment leaves the journal as it was
after the last finished step; the loop resumes from there.

Image statuses (Status): ``hand`` (a label in the user's labelled folder), ``verified`` (a
label under the work dir that a person verified in LabelImg: counted apart, treated as hand),
``auto`` (accepted from the detector, with its round and scores), ``unlabelled``.
Round stages (Stage), in order; a round's ``stage`` is the last one finished.

The journal records its schema version (meta key ``schema_version``, an integer). A journal
written before versions were recorded (tables present, no version) is version 1, the same
tables as now: it is stamped on opening. A version this code does not know is refused.
Rows are read and written by column name, in this module only.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

from tsoda.errors import JournalError

SCHEMA_VERSION = 1
VERSION_KEY = "schema_version"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY, image TEXT NOT NULL, xml TEXT, status TEXT NOT NULL,
    split TEXT, round INTEGER, min_score REAL, max_score REAL, boxes INTEGER);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY, stage TEXT, steps INTEGER NOT NULL, checkpoint TEXT,
    saved_model TEXT, metrics TEXT, accepted INTEGER, held_back INTEGER,
    started REAL NOT NULL, seconds REAL NOT NULL DEFAULT 0);
"""


class _Text(str, Enum):
    """Members are their stored text: equal to it, and str() and f-strings give it."""

    def __str__(self) -> str:
        return self.value


class Status(_Text):
    HAND = "hand"
    VERIFIED = "verified"
    AUTO = "auto"
    UNLABELLED = "unlabelled"


class Split(_Text):
    TRAIN = "train"
    TEST = "test"


class Stage(_Text):
    """A round's stages, in the order they run."""

    RECORDS = "records"
    TRAIN = "train"
    EXPORT = "export"
    EVALUATE = "evaluate"
    LABEL = "label"
    ACCEPT = "accept"


STAGES = tuple(Stage)


@dataclass(frozen=True)
class ImageRow:
    id: str
    image: str
    xml: str | None
    status: Status
    split: Split | None = None
    round: int | None = None
    min_score: float | None = None
    max_score: float | None = None
    boxes: int | None = None


@dataclass(frozen=True)
class RoundRow:
    round: int
    stage: Stage | None
    steps: int
    checkpoint: str | None
    saved_model: str | None
    metrics: dict
    accepted: int | None
    held_back: int | None
    started: float
    seconds: float

    @property
    def done(self) -> bool:
        return self.stage == STAGES[-1]

    @property
    def next_stage(self) -> Stage | None:
        """The stage to run next (None once the round is done)."""
        return None if self.done else STAGES[STAGES.index(self.stage) + 1 if self.stage else 0]


IMAGE_COLUMNS = tuple(f.name for f in dataclasses.fields(ImageRow))
ROUND_COLUMNS = tuple(f.name for f in dataclasses.fields(RoundRow))


def _stored(value):
    """What SQLite stores for ``value``: an enum as its text."""
    return value.value if isinstance(value, Enum) else value


_IMAGE_ENUMS = {"status": Status, "split": Split}


def _image_values(fields: dict) -> dict:
    """``fields`` of an image row as stored; a status or split must be one of the
    journal's (ValueError otherwise: e.g. a manifest status is not an image status)."""
    return {name: _stored(_IMAGE_ENUMS[name](value) if name in _IMAGE_ENUMS and
                          value is not None else value) for name, value in fields.items()}


def _check_columns(names, columns: tuple[str, ...]) -> None:
    unknown = sorted(set(names) - set(columns))
    if unknown:
        raise ValueError(f"not journal columns: {', '.join(unknown)}")


class Journal:
    """Reads and writes the journal file; use ``with journal.transaction():`` to group.

    Raises:
        JournalError: the file is not a SQLite database, not a journal, or a journal of a
            schema version this code does not read.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None)
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA synchronous=FULL")
            self._open_schema()
        except Exception as error:
            self._db.close()
            if type(error) is sqlite3.DatabaseError:  # not a database, or a damaged one
                raise JournalError(self.path, f"not a SQLite journal ({error}): move it away, "
                                              "or use a new --work_dir") from None
            raise

    def _open_schema(self) -> None:
        """Creates a new journal's tables, or checks an existing journal's version, and
        stamps the version: a journal without one is version 1 (see the module's doc)."""
        tables = {row["name"] for row in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise JournalError(self.path, "a SQLite database but not a TSODA journal (no meta "
                                          "table): use a new --work_dir")
        stored = self.get_meta(VERSION_KEY) if tables else SCHEMA_VERSION  # new: current
        if tables and type(stored) is int and stored == SCHEMA_VERSION:
            return
        version = 1 if stored is None else stored  # tables without a version: version 1
        if type(version) is not int or not 1 <= version <= SCHEMA_VERSION:
            raise JournalError(self.path, f"written by journal schema version {version!r}; this "
                                          f"tsoda reads version {SCHEMA_VERSION}: use the tsoda "
                                          "that wrote it, or a new --work_dir")
        with self.transaction():  # a version below SCHEMA_VERSION would be migrated here
            for statement in filter(str.strip, SCHEMA.split(";")):
                self._db.execute(statement)
            self.set_meta(VERSION_KEY, SCHEMA_VERSION)

    def close(self) -> None:
        self._db.close()

    def transaction(self):
        """A context manager: everything inside commits together or not at all."""
        return _Transaction(self._db)

    def get_meta(self, key: str):
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row["value"])

    def set_meta(self, key: str, value) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                         (key, json.dumps(value)))

    def meta_keys(self, prefix: str = "") -> list[str]:
        rows = self._db.execute("SELECT key FROM meta WHERE key LIKE ? ORDER BY key",
                                (prefix + "%",))
        return [row["key"] for row in rows]

    def add_image(self, row: ImageRow) -> None:
        values = _image_values(asdict(row))
        self._db.execute(f"INSERT OR IGNORE INTO images ({', '.join(values)}) "
                         f"VALUES ({', '.join(':' + name for name in values)})", values)

    def update_image(self, image_id: str, **fields) -> None:
        _check_columns(fields, IMAGE_COLUMNS)
        names = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(f"UPDATE images SET {names} WHERE id = ?",
                         (*_image_values(fields).values(), image_id))

    def images(self, status: Status | str | None = None,
               split: Split | str | None = None) -> list[ImageRow]:
        query, args = "SELECT * FROM images WHERE 1=1", []
        if status is not None:
            query, args = query + " AND status = ?", [*args, Status(status).value]
        if split is not None:
            query, args = query + " AND split = ?", [*args, Split(split).value]
        return [self._image_row(row) for row in self._db.execute(query + " ORDER BY id", args)]

    def _image_row(self, row: sqlite3.Row) -> ImageRow:
        values = {name: row[name] for name in IMAGE_COLUMNS}
        return ImageRow(**{**values, "status": self._enum(Status, values["status"]),
                           "split": self._enum(Split, values["split"])})

    def _enum(self, kind: type[Enum], text: str | None):
        """``text`` as a member of ``kind`` (None stays None); unknown text is refused."""
        try:
            return None if text is None else kind(text)
        except ValueError:
            raise JournalError(self.path, f"unknown {kind.__name__.lower()} {text!r}: not "
                                          "written by this tsoda") from None

    def counts(self) -> dict[Status, int]:
        rows = self._db.execute("SELECT status, COUNT(*) AS n FROM images GROUP BY status")
        return {**{status: 0 for status in Status},
                **{self._enum(Status, row["status"]): row["n"] for row in rows}}

    def start_round(self, number: int, steps: int) -> None:
        self._db.execute("INSERT OR IGNORE INTO rounds (round, steps, started) VALUES (?,?,?)",
                         (number, steps, time.time()))

    def finish_stage(self, number: int, stage: Stage, seconds: float, **fields) -> None:
        """Records that ``stage`` of round ``number`` finished, with its results."""
        _check_columns(fields, ROUND_COLUMNS)
        fields = {k: json.dumps(v) if k == "metrics" else _stored(v) for k, v in fields.items()}
        names = "".join(f", {name} = ?" for name in fields)
        self._db.execute(f"UPDATE rounds SET stage = ?, seconds = seconds + ?{names} "
                         "WHERE round = ?",
                         (Stage(stage).value, seconds, *fields.values(), number))

    def rounds(self) -> list[RoundRow]:
        rows = self._db.execute("SELECT * FROM rounds ORDER BY round").fetchall()
        return [self._round_row(row) for row in rows]

    def _round_row(self, row: sqlite3.Row) -> RoundRow:
        values = {name: row[name] for name in ROUND_COLUMNS}
        return RoundRow(**{**values, "stage": self._enum(Stage, values["stage"]),
                           "metrics": json.loads(values["metrics"]) if values["metrics"] else {}})


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, kind, *_):
        self._db.execute("ROLLBACK" if kind else "COMMIT")
