"""Compose replies: verbatim quotes with their sections, or an honest "not covered", and the safety text.

Pure functions over small dataclasses: no model, no store. Every reply is built by ``finish``,
which is the only place a reply's text is assembled, so none can leave without the safety text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from .. import wording
from ..articles.corpus import DISCLAIMER, SEEK_HELP
from .ranking import Candidate
from .retrieval import Hit
from .trace import Trace
from .triage import RedFlag, Topic

ANSWERED, NOT_COVERED, URGENT, REJECTED, UNAVAILABLE = "answered", "not_covered", "urgent", "rejected", "unavailable"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<|~])")
MAX_QUOTE_CHARS = 600


@dataclass(frozen=True)
class Source:
    article: str
    section: str
    chunk_id: str
    score: float
    text: str


@dataclass(frozen=True)
class Quote:
    text: str
    section: str
    article: str
    source: str
    score: float
    chunk_id: str = ""


@dataclass
class Reply:
    question: str
    status: str
    answer: str
    sources: list[Source] = field(default_factory=list)
    quotes: list[Quote] = field(default_factory=list)  # in the order shown
    suggestions: list[str] = field(default_factory=list)  # questions the article does answer
    index_version: int | None = None
    # The parts of ``answer``, for interfaces that show them apart.
    alert: str = ""
    body: str = ""
    safety: str = ""
    trace: Trace = field(default_factory=Trace)  # how it was made: for staff, never shown to patients

    def to_dict(self) -> dict[str, object]:
        return {
            "question": self.question,
            "status": self.status,
            "answer": self.answer,
            "sources": [asdict(s) for s in self.sources],
            "quotes": [
                {"text": q.text, "article": q.article, "section": q.section, "chunk_id": q.chunk_id, "score": q.score}
                for q in self.quotes
            ],
            "suggestions": list(self.suggestions),
            "index_version": self.index_version,
        }


def escape_markdown(text: str) -> str:
    """Show text exactly as written: no HTML, links, images or emphasis can come through."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def quote_of(candidate: Candidate) -> Quote:
    hit = candidate.hit
    return Quote(candidate.sentence.text, hit.section, hit.article, hit.source, round(candidate.score, 4), hit.chunk_id)


def quoted_body(quotes: Sequence[Quote]) -> str:
    articles = list(dict.fromkeys(q.article for q in quotes))
    lead = f"From the article *{escape_markdown(articles[0])}*:" if len(articles) == 1 else "From the articles:"
    blocks = [lead]
    for quote in quotes:
        text = quote.text if len(quote.text) <= MAX_QUOTE_CHARS else quote.text[:MAX_QUOTE_CHARS] + "…"
        cite = escape_markdown(quote.section if len(articles) == 1 else f"{quote.article}: {quote.section}")
        blocks.append(f"> \u201c{escape_markdown(text)}\u201d\n>\n> \u2014 *{cite}*")
    return "\n\n".join(blocks)


def not_covered_body(title: str, topic: Topic | None, default_ask: str, suggestions: Sequence[str] = ()) -> str:
    ask = topic.ask if topic else default_ask
    body = wording.NOT_COVERED.format(title=escape_markdown(title), ask=escape_markdown(ask))
    if suggestions:
        body += f"\n\n{wording.SUGGESTIONS}\n" + "\n".join(f"- {escape_markdown(q)}" for q in suggestions)
    return body


def alert_text(flags: Sequence[RedFlag]) -> str:
    lines = [wording.ALERT.format(title=escape_markdown(f.title), message=escape_markdown(f.message)) for f in flags]
    return "\n\n".join(lines)


def safety_text(safety: dict[str, str]) -> str:
    return f"**{SEEK_HELP}**\n\n{escape_markdown(safety[SEEK_HELP])}\n\n*{escape_markdown(safety[DISCLAIMER])}*"


SAFETY_RULE = "\n\n---\n\n"


def finish(reply: Reply, safety: dict[str, str]) -> Reply:
    """Assemble the full reply text; the safety text always closes it."""
    reply.safety = safety_text(safety)
    parts = [p for p in (reply.alert, reply.body) if p]
    reply.answer = "\n\n".join(parts) + SAFETY_RULE + reply.safety
    return reply


def sources_of(hits: Sequence[Hit], quotes: Sequence[Quote]) -> list[Source]:
    """The chunks the quotes come from, in the order quoted; none when nothing was quoted."""
    by_id = {h.chunk_id: h for h in hits}
    quoted = list(dict.fromkeys(q.chunk_id for q in quotes))
    best = {cid: max(q.score for q in quotes if q.chunk_id == cid) for cid in quoted}
    return [
        Source(h.article, h.section, h.chunk_id, best[h.chunk_id], h.text) for cid in quoted if (h := by_id.get(cid))
    ]
