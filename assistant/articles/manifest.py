"""What a published index version holds and what built it: the record every reader checks first."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import IndexInvalid


@dataclass
class Manifest:
    """What a published version holds and what built it."""

    version: int
    fingerprint: str
    model: str
    built_at: str
    chunks: int
    articles: dict[str, dict[str, Any]]  # source -> {"title", "chunks", "safety" or None}
    default_source: str  # the article whose safety text closes replies that cite none
    parent: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    # For lexical scoring: chunks counted, and how many chunks hold each term (terms in 2+ chunks).
    term_chunks: int = 0
    term_frequencies: dict[str, int] = field(default_factory=dict)

    def safety_for(self, source: str | None = None) -> dict[str, str]:
        article = self.articles.get(source or "") or {}
        return article.get("safety") or self.articles[self.default_source]["safety"]

    def title_of(self, source: str) -> str:
        return str(self.articles.get(source, {}).get("title", source))

    def to_json(self) -> str:
        # A shallow dict: asdict() would deep-copy the term table and every article's safety text first.
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        try:
            manifest = cls(**data)
            manifest.safety_for()
        except (TypeError, KeyError) as exc:
            raise IndexInvalid(f"index manifest is incomplete ({exc}): run python ingest.py to rebuild it") from None
        return manifest
