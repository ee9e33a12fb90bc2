"""Patient ratings in SQLite: the exchange rated, never who rated it."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reply_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment TEXT NOT NULL DEFAULT '',
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    status TEXT NOT NULL,
    sources TEXT NOT NULL,
    index_version INTEGER
)
"""
COLUMNS = ("created_at", "rating", "comment", "question", "answer", "status", "sources", "index_version")
MAX_COMMENT = 1000
MAX_QUESTION = 2000
MAX_ANSWER = 8000
MAX_SOURCES = 20
# A spreadsheet cell holds at most 32,767 characters; stay well below it.
MAX_CELL = 32_000
TRUNCATED = " …"


def capped(text: object, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED


def _cell(value: object) -> object:
    """Patient text never runs as a spreadsheet formula when staff open the export, and fits a cell."""
    if isinstance(value, str):
        if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            value = "'" + value
        return capped(value, MAX_CELL)
    return value


def _sources(reply: dict) -> list[dict]:
    sources = reply.get("sources")
    return [s for s in sources[:MAX_SOURCES] if isinstance(s, dict)] if isinstance(sources, list) else []


class FeedbackStore:
    """One row per rated reply: a second click updates it, never duplicates it."""

    def __init__(self, path: Path, retention_days: int | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)
        if retention_days is not None and retention_days > 0:
            self.purge_older_than(timedelta(days=retention_days))

    def purge_older_than(self, age: timedelta) -> int:
        """Delete ratings older than ``age``; returns how many went."""
        cutoff = (datetime.now(UTC) - age).isoformat(timespec="seconds")
        with self._lock, self._connect() as db:
            return db.execute("DELETE FROM feedback WHERE created_at < ?", (cutoff,)).rowcount

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def rate(self, reply_id: str, reply: dict, liked: bool, comment: str = "") -> None:
        row = (
            reply_id,
            datetime.now(UTC).isoformat(timespec="seconds"),
            "up" if liked else "down",
            capped(comment, MAX_COMMENT),
            capped(reply.get("question", ""), MAX_QUESTION),
            capped(reply.get("answer", ""), MAX_ANSWER),
            capped(reply.get("status", ""), 40),
            json.dumps(
                [{k: capped(s.get(k, ""), 300) for k in ("article", "section", "chunk_id")} for s in _sources(reply)]
            ),
            reply.get("index_version"),
        )
        with self._lock, self._connect() as db:
            db.execute(
                "INSERT INTO feedback (reply_id, created_at, rating, comment, question, answer, status, sources, index_version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(reply_id) DO UPDATE SET rating=excluded.rating, created_at=excluded.created_at,"
                " comment=CASE WHEN excluded.comment != '' THEN excluded.comment ELSE feedback.comment END",
                row,
            )

    def comment(self, reply_id: str, comment: str) -> bool:
        with self._lock, self._connect() as db:
            cur = db.execute("UPDATE feedback SET comment=? WHERE reply_id=?", (capped(comment, MAX_COMMENT), reply_id))
            return cur.rowcount == 1

    def rows(self, limit: int = 500) -> list[tuple]:
        with self._connect() as db:
            return db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM feedback ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows([[_cell(value) for value in row] for row in self.rows(limit=1_000_000)])
        return out.getvalue()
