"""The TSODA journal: every image's status and every round's progress, in SQLite.

SQLite commits atomically, so a process killed at any moment leaves the journal as it was
after the last finished step; the loop resumes from there.

Image statuses: ``hand`` (a label in the user's labelled folder), ``verified`` (a label
under the work dir that a person verified in LabelImg: counted apart, treated as hand),
``auto`` (accepted from the detector, with its round and scores), ``unlabelled``.
Round stages, in order: see STAGES; a round's ``stage`` is the last one finished.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

STAGES = ("records", "train", "export", "evaluate", "label", "accept")
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


@dataclass(frozen=True)
class ImageRow:
    id: str
    image: str
    xml: str | None
    status: str
    split: str | None
    round: int | None
    min_score: float | None
    max_score: float | None
    boxes: int | None


@dataclass(frozen=True)
class RoundRow:
    round: int
    stage: str | None
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


class Journal:
    """Reads and writes the journal file; use ``with journal.transaction():`` to group."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def transaction(self):
        """A context manager: everything inside commits together or not at all."""
        return _Transaction(self._db)

    def get_meta(self, key: str):
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta_keys(self, prefix: str = "") -> list[str]:
        rows = self._db.execute("SELECT key FROM meta WHERE key LIKE ? ORDER BY key",
                                (prefix + "%",))
        return [row[0] for row in rows]

    def add_image(self, row: ImageRow) -> None:
        self._db.execute("INSERT OR IGNORE INTO images VALUES (?,?,?,?,?,?,?,?,?)",
                         tuple(row.__dict__.values()))

    def update_image(self, image_id: str, **fields) -> None:
        names = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(f"UPDATE images SET {names} WHERE id = ?",
                         (*fields.values(), image_id))

    def images(self, status: str | None = None, split: str | None = None) -> list[ImageRow]:
        query, args = "SELECT * FROM images WHERE 1=1", []
        if status is not None:
            query, args = query + " AND status = ?", [*args, status]
        if split is not None:
            query, args = query + " AND split = ?", [*args, split]
        return [ImageRow(*row) for row in self._db.execute(query + " ORDER BY id", args)]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM images GROUP BY status")
        return {"hand": 0, "verified": 0, "auto": 0, "unlabelled": 0, **dict(rows.fetchall())}

    def start_round(self, number: int, steps: int) -> None:
        self._db.execute("INSERT OR IGNORE INTO rounds (round, steps, started) VALUES (?,?,?)",
                         (number, steps, time.time()))

    def finish_stage(self, number: int, stage: str, seconds: float, **fields) -> None:
        """Records that ``stage`` of round ``number`` finished, with its results."""
        fields = {k: json.dumps(v) if k == "metrics" else v for k, v in fields.items()}
        names = "".join(f", {name} = ?" for name in fields)
        self._db.execute(f"UPDATE rounds SET stage = ?, seconds = seconds + ?{names} "
                         "WHERE round = ?", (stage, seconds, *fields.values(), number))

    def rounds(self) -> list[RoundRow]:
        rows = self._db.execute("SELECT * FROM rounds ORDER BY round").fetchall()
        return [RoundRow(*row[:5], json.loads(row[5]) if row[5] else {}, *row[6:])
                for row in rows]


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, kind, *_):
        self._db.execute("ROLLBACK" if kind else "COMMIT")
