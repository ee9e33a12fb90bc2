"""The review queue: patient questions staff should look at, kept only with ``ASSISTANT_REVIEW_LOG=on``.

It keeps questions refused as not covered, answered ones whose best sentence was close to the
threshold or to a sentence of another passage, and replies rated 👎: the question (emails, phone
numbers and long digit runs removed, capped at the maximum question length), the status, the
candidate passages with their scores, the index version and the time. Never an IP address or a
session id. Entries older than the retention are deleted at start and once a day after.

Its own table, ``review``, in the app's database (assistant/database.py: the SQLite file, or the
PostgreSQL server of ``ASSISTANT_DATABASE_URL``), created by that module's schema migrations.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, inspect, select, update

from ..answering.compose import ANSWERED, NOT_COVERED, Reply
from ..database import review

NOT_COVERED_REASON = "not covered"
NEAR_THRESHOLD = "close to the threshold"
NEAR_SECOND = "close to a second passage"
RATED_DOWN = "rated 👎"
MAX_CANDIDATES = 5
DAY = 86_400.0

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A phone number: seven or more digits, with the spaces, dots, dashes, brackets and + people write.
_PHONE = re.compile(r"(?<![\w])\+?\(?\d(?:[\s().-]{0,2}\d){6,}(?![\w])")
_DIGITS = re.compile(r"\d{5,}")


def scrub(text: str, limit: int) -> str:
    """``text`` without emails, phone numbers and long digit runs, capped at ``limit`` characters."""
    text = _EMAIL.sub("[email]", text)
    text = _PHONE.sub("[phone]", text)
    text = _DIGITS.sub("[number]", text)
    return text[:limit]


@dataclass(frozen=True)
class Entry:
    id: int
    created_at: str
    question: str
    reason: str
    status: str
    candidates: list[dict]
    index_version: int | None
    resolution: str = ""


def review_reason(reply: Reply, answer: float, near: float) -> str | None:
    """Why a patient's reply belongs in the review queue, or None."""
    if reply.alert or reply.status not in (ANSWERED, NOT_COVERED):
        return None
    if reply.status == NOT_COVERED:
        return NOT_COVERED_REASON
    candidates = reply.trace.candidates
    if not candidates:
        return None
    best = candidates[0]
    if best.score < answer + near:
        return NEAR_THRESHOLD
    if any(c.section != best.section and c.score >= best.score - near for c in candidates[1:]):
        return NEAR_SECOND
    return None


def candidates_of(reply: Reply) -> list[dict]:
    """The best sentences a reply was chosen from, with their section, article and score."""
    article = {h.section: h.article for h in reversed(reply.trace.hits)}
    return [
        {"section": c.section, "article": article.get(c.section, ""), "text": c.text[:400], "score": c.score}
        for c in reply.trace.candidates[:MAX_CANDIDATES]
    ]


class ReviewLog:
    """The queue. Thread-safe; every write may purge (at most once a day)."""

    def __init__(
        self,
        where: Path | str | Engine,
        retention_days: int = 30,
        max_question_chars: int = 2000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        from ..database import open_database  # the schema, ``review`` included, brought up to date

        if isinstance(where, Engine):
            self.engine = where
        else:
            self.engine = open_database(where if isinstance(where, str) else f"sqlite:///{where}")
        self.retention_days = retention_days
        self.max_question_chars = max_question_chars
        self.clock = clock
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._purged = -DAY
        self.purge_if_due()

    def purge(self) -> int:
        """Delete entries older than the retention; returns how many went."""
        if self.retention_days <= 0:
            return 0
        cutoff = (self.clock() - timedelta(days=self.retention_days)).isoformat(timespec="seconds")
        with self._lock, self.engine.begin() as db:
            return db.execute(review.delete().where(review.c.created_at < cutoff)).rowcount

    def purge_if_due(self) -> int:
        now = self.monotonic()
        if now - self._purged < DAY:
            return 0
        self._purged = now
        return self.purge()

    def purge_daily(self) -> None:
        """Purge once a day while the app runs, even when nobody asks anything."""
        timer = threading.Timer(DAY, self._daily)
        timer.daemon = True
        timer.start()

    def _daily(self) -> None:
        try:
            self.purge_if_due()
        finally:
            self.purge_daily()

    def add(self, question: str, reason: str, status: str, candidates: list[dict], index_version: int | None) -> None:
        self.purge_if_due()
        row = {
            "created_at": self.clock().isoformat(timespec="seconds"),
            "question": scrub(question, self.max_question_chars),
            "reason": reason,
            "status": status,
            "candidates": json.dumps(candidates[:MAX_CANDIDATES], ensure_ascii=False),
            "index_version": index_version,
        }
        with self._lock, self.engine.begin() as db:
            db.execute(insert(review).values(**row))

    def consider(self, reply: Reply, answer: float, near: float) -> str | None:
        """Keep ``reply`` if it belongs in the queue; returns the reason."""
        reason = review_reason(reply, answer, near)
        if reason and reply.question.strip():
            self.add(reply.question, reason, reply.status, candidates_of(reply), reply.index_version)
        return reason

    def rated_down(self, record: dict) -> None:
        """A reply a patient rated 👎 (the record the chat keeps for rating: no details, its sources)."""
        given = record.get("sources")
        sources = given if isinstance(given, list) else []
        candidates = [
            {
                "section": s.get("section", ""),
                "article": s.get("article", ""),
                "text": str(s.get("text", ""))[:400],
                "score": s.get("score", 0.0),
            }
            for s in sources
            if isinstance(s, dict)
        ]
        version = record.get("index_version")
        self.add(
            str(record.get("question", "")),
            RATED_DOWN,
            str(record.get("status", ""))[:40],
            candidates,
            version if isinstance(version, int) else None,
        )

    def open_entries(self, limit: int = 2000) -> list[Entry]:
        """Entries nobody has acted on yet, newest first."""
        self.purge_if_due()
        query = select(review).where(review.c.resolution == "").order_by(review.c.id.desc()).limit(limit)
        with self.engine.connect() as db:
            rows = db.execute(query).mappings().all()
        return [Entry(**{**row, "candidates": json.loads(row["candidates"])}) for row in rows]

    def resolve(self, ids: list[int], resolution: str) -> None:
        with self._lock, self.engine.begin() as db:
            db.execute(update(review).where(review.c.id.in_(ids)).values(resolution=resolution))

    def columns(self) -> list[str]:
        return [column["name"] for column in inspect(self.engine).get_columns("review")]
