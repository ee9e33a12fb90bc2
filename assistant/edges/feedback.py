"""Patient ratings and comments: the exchange rated, never who rated it.

Kept in the app's database (``assistant.database``): one SQLite file by default, or a PostgreSQL
server that every replica writes to.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, case, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..config import Settings
from ..database import database_url, open_database
from ..database import feedback as table

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

    def __init__(self, where: Path | str | Engine, retention_days: int | None = None) -> None:
        """``where``: a SQLite file, a database URL, or an engine already opened."""
        if isinstance(where, Engine):
            self.engine = where
        else:
            self.engine = open_database(where if isinstance(where, str) else f"sqlite:///{where}")
        self._lock = threading.Lock()  # SQLite allows one writer; a server needs no such care, but it costs nothing
        if retention_days is not None and retention_days > 0:
            self.purge_older_than(timedelta(days=retention_days))

    @classmethod
    def from_settings(cls, settings: Settings) -> FeedbackStore:
        return cls(database_url(settings), retention_days=settings.feedback_retention_days)

    def purge_older_than(self, age: timedelta) -> int:
        """Delete ratings older than ``age``; returns how many went."""
        cutoff = (datetime.now(UTC) - age).isoformat(timespec="seconds")
        with self._lock, self.engine.begin() as db:
            return db.execute(table.delete().where(table.c.created_at < cutoff)).rowcount

    def rate(self, reply_id: str, reply: dict, liked: bool, comment: str = "") -> None:
        row = {
            "reply_id": reply_id,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "rating": "up" if liked else "down",
            "comment": capped(comment, MAX_COMMENT),
            "question": capped(reply.get("question", ""), MAX_QUESTION),
            "answer": capped(reply.get("answer", ""), MAX_ANSWER),
            "status": capped(reply.get("status", ""), 40),
            "sources": json.dumps(
                [{k: capped(s.get(k, ""), 300) for k in ("article", "section", "chunk_id")} for s in _sources(reply)]
            ),
            "index_version": reply.get("index_version"),
        }
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(table).values(row)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.reply_id],
            set_={
                "rating": statement.excluded.rating,
                "created_at": statement.excluded.created_at,
                # A second click keeps the comment unless it brings one.
                "comment": _keep_comment(statement.excluded.comment),
            },
        )
        with self._lock, self.engine.begin() as db:
            db.execute(statement)

    def comment(self, reply_id: str, comment: str) -> bool:
        with self._lock, self.engine.begin() as db:
            done = db.execute(
                update(table).where(table.c.reply_id == reply_id).values(comment=capped(comment, MAX_COMMENT))
            )
            return done.rowcount == 1

    def rows(self, limit: int = 500) -> list[tuple]:
        with self.engine.connect() as db:
            query = select(*(table.c[name] for name in COLUMNS)).order_by(table.c.id.desc()).limit(limit)
            return [tuple(row) for row in db.execute(query)]

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows([[_cell(value) for value in row] for row in self.rows(limit=1_000_000)])
        return out.getvalue()

    def close(self) -> None:
        self.engine.dispose()


def _keep_comment(new: Any) -> Any:
    return case((new != "", new), else_=table.c.comment)
