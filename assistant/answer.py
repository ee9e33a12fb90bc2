"""Compose replies: verbatim quotes with their sections, or an honest "not covered", and the safety text.

Pure functions over small dataclasses: no model, no store. Every reply is built by ``finish``,
which is the only place a reply's text is assembled, so none can leave without the safety text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .corpus import DISCLAIMER, SEEK_HELP
from .retrieval import Hit
from .triage import RedFlag, Topic

ANSWERED, NOT_COVERED, URGENT, REJECTED, UNAVAILABLE = "answered", "not_covered", "urgent", "rejected", "unavailable"
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
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


@dataclass
class Reply:
    question: str
    status: str
    answer: str
    sources: list[Source] = field(default_factory=list)
    index_version: int | None = None
    # The parts of ``answer``, for interfaces that show them apart.
    alert: str = ""
    body: str = ""
    safety: str = ""
    details: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "question": self.question,
            "status": self.status,
            "answer": self.answer,
            "sources": [asdict(s) for s in self.sources],
            "index_version": self.index_version,
        }


def escape_markdown(text: str) -> str:
    """Show text exactly as written: no HTML, links, images or emphasis can come through."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def sentences(text: str) -> list[str]:
    """Split a passage into sentences and list items, keeping each one's exact wording."""
    parts = []
    for piece in _SENTENCE.split(text):
        piece = piece.strip()
        if piece.startswith(("- ", "* ")):
            piece = piece[2:].strip()
        if piece:
            parts.append(piece)
    return parts


def select_quotes(
    hits: Sequence[Hit],
    query: np.ndarray,
    sentence_vectors: Callable[[Hit], tuple[list[str], np.ndarray]],
    sentence_bonus: Callable[[str], float] = lambda _sentence: 0.0,
    *,
    min_similarity: float,
    min_sentence_similarity: float,
    max_quotes: int,
    window: float = 0.12,
) -> list[Quote]:
    """The sentences that best answer the query, most relevant first, from relevant sections only."""
    if not hits or hits[0].score < min_similarity:
        return []
    relevant = [h for h in hits if h.score >= min_similarity and h.score >= hits[0].score - window]
    scored: list[Quote] = []
    for hit in relevant:
        texts, vectors = sentence_vectors(hit)
        for text, score in zip(texts, vectors @ query, strict=True):
            scored.append(Quote(text, hit.section, hit.article, hit.source, float(score) + sentence_bonus(text)))
    scored.sort(key=lambda q: q.score, reverse=True)
    top_section = relevant[0].section
    best_in_top = next((q for q in scored if q.section == top_section), None)
    chosen: list[Quote] = [best_in_top] if best_in_top else []
    for quote in scored:
        if len(chosen) >= max_quotes:
            break
        if quote in chosen:
            continue
        if quote.score >= min_sentence_similarity and quote.score >= scored[0].score - 0.15:
            chosen.append(quote)
    chosen.sort(key=lambda q: q.score, reverse=True)
    return chosen


def quoted_body(quotes: Sequence[Quote]) -> str:
    articles = list(dict.fromkeys(q.article for q in quotes))
    lead = f"From the article *{escape_markdown(articles[0])}*:" if len(articles) == 1 else "From the articles:"
    blocks = [lead]
    for quote in quotes:
        text = quote.text if len(quote.text) <= MAX_QUOTE_CHARS else quote.text[:MAX_QUOTE_CHARS] + "…"
        cite = escape_markdown(quote.section if len(articles) == 1 else f"{quote.article}: {quote.section}")
        blocks.append(f"> \u201c{escape_markdown(text)}\u201d\n>\n> \u2014 *{cite}*")
    return "\n\n".join(blocks)


def not_covered_body(title: str, topic: Topic | None, default_ask: str) -> str:
    ask = topic.ask if topic else default_ask
    return (
        f"The article *{escape_markdown(title)}* doesn't cover this question, so I can't answer it "
        f"from the article. Please ask {escape_markdown(ask)}."
    )


def alert_text(flags: Sequence[RedFlag]) -> str:
    lines = [f"**\u26a0\ufe0f {escape_markdown(flag.title)}: please act now.** {escape_markdown(flag.message)}" for flag in flags]
    return "\n\n".join(lines)


def safety_text(safety: dict[str, str]) -> str:
    return (
        f"**{SEEK_HELP}**\n\n{escape_markdown(safety[SEEK_HELP])}\n\n"
        f"*{escape_markdown(safety[DISCLAIMER])}*"
    )


SAFETY_RULE = "\n\n---\n\n"


def finish(reply: Reply, safety: dict[str, str]) -> Reply:
    """Assemble the full reply text; the safety text always closes it."""
    reply.safety = safety_text(safety)
    parts = [p for p in (reply.alert, reply.body) if p]
    reply.answer = "\n\n".join(parts) + SAFETY_RULE + reply.safety
    return reply


def sources_of(hits: Sequence[Hit], quotes: Sequence[Quote], min_similarity: float, window: float = 0.12) -> list[Source]:
    """The relevant sections the answer was drawn from, best first; none when nothing was quoted."""
    if not quotes:
        return []
    quoted = {(q.source, q.section) for q in quotes}
    relevant = [
        h for h in hits
        if (h.source, h.section) in quoted or (h.score >= min_similarity and h.score >= hits[0].score - window)
    ]
    return [Source(h.article, h.section, h.chunk_id, round(h.score, 4), h.text) for h in relevant]
