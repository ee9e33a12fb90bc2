"""How a reply was made, for staff, the review queue and the quality reports; patients never see it.

``Assistant.ask`` fills one ``Trace`` along the answer path (triage, retrieval, ranking) and hands it
back on the reply. ``to_dict`` is its JSON form, as the staff console shows it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class FlagFound:
    """A red flag triage raised: by a pattern, or by meaning ("similar to: <example>")."""

    flag: str
    tier: str
    clause: str = ""
    how: str = ""


@dataclass(frozen=True)
class Searched:
    """A chunk retrieval returned, best first."""

    section: str
    article: str
    score: float
    chunk_id: str


@dataclass(frozen=True)
class Weighed:
    """A sentence ranking scored; ``matched`` is the phrasing (or its own wording) it was matched on."""

    text: str
    section: str
    score: float
    matched: str


@dataclass
class Trace:
    triage: list[FlagFound] = field(default_factory=list)  # the red flags found, with the clause and how
    retrieval_query: str = ""  # the question as it was embedded (topic words said as "it", typos mended)
    context: str | None = None  # earlier messages a follow-up was read with
    scope: list[str] = field(default_factory=list)  # the articles a question was limited to, by their subject
    hits: list[Searched] = field(default_factory=list)
    topic: str | None = None  # a known not-covered topic the question matched by pattern
    ranking: str = ""  # the decision, in words
    not_covered_similarity: float | None = None  # to the nearest question the article is known not to answer
    candidates: list[Weighed] = field(default_factory=list)  # the best few
    error: str | None = None  # why the reply is "unavailable"
    busy: bool = False  # the queue was full: nothing was searched
    seconds: float | None = None

    def flag_ids(self) -> list[str]:
        return [found.flag for found in self.triage]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
