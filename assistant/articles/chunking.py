"""Section-aware chunks with deterministic ids: the same text always gets the same id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from .corpus import SAFETY_SECTIONS, Article

if TYPE_CHECKING:
    from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

SCHEMA_VERSION = 1
HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")]
INTRODUCTION = "Introduction"


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    article: str  # the article's title
    source: str  # file, relative to the corpus folder
    section: str  # e.g. "Risks and Considerations of Dry Needling > Infection Risk"
    text: str
    position: int  # order within the article

    @property
    def kind(self) -> str:
        return "safety" if self.section.split(" > ")[0] in SAFETY_SECTIONS else "article"

    @property
    def searchable(self) -> str:
        return searchable(self.section, self.text)

    def metadata(self) -> dict[str, str | int]:
        meta: dict[str, str | int] = {k: v for k, v in asdict(self).items() if k != "text"}
        meta["kind"] = self.kind
        return meta


def searchable(section: str, text: str) -> str:
    """The words lexical scoring sees: the section's own heading and the text."""
    return f"{section.split(' > ')[-1]} {text}"


def chunk_id(source: str, section: str, text: str) -> str:
    digest = hashlib.sha256("\x00".join((source, section, text)).encode("utf-8")).hexdigest()
    return digest[:24]


@dataclass(frozen=True)
class Chunker:
    """Sections cut into chunks of at most ``chunk_size`` characters (ASSISTANT_CHUNK_SIZE and _OVERLAP)."""

    chunk_size: int
    chunk_overlap: int

    def fingerprint_parts(self) -> dict[str, object]:
        return {"schema": SCHEMA_VERSION, "headers": HEADERS, **asdict(self)}

    @lru_cache(maxsize=1)  # noqa: B019 - one splitter pair per (frozen, hashable) chunker
    def _splitters(self) -> tuple[MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter]:
        from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

        return (
            MarkdownHeaderTextSplitter(headers_to_split_on=HEADERS, strip_headers=True),
            RecursiveCharacterTextSplitter(
                chunk_size=self.chunk_size,
                chunk_overlap=self.chunk_overlap,
                separators=["\n\n", "\n", ". ", " ", ""],
                keep_separator="end",
            ),
        )

    def split(self, article: Article) -> list[Chunk]:
        by_header, by_size = self._splitters()
        chunks: list[Chunk] = []
        seen: set[str] = set()
        for doc in by_header.split_text(article.body):
            path = [doc.metadata[key] for key in ("h2", "h3", "h4") if key in doc.metadata]
            section = " > ".join(path) or INTRODUCTION
            for piece in by_size.split_text(doc.page_content):
                text = piece.strip()
                if not text:
                    continue
                cid = chunk_id(article.source, section, text)
                while cid in seen:  # the same passage twice in one section
                    cid = chunk_id(article.source, section, f"{text}\x00{len(chunks)}")
                seen.add(cid)
                chunks.append(Chunk(cid, article.title, article.source, section, text, len(chunks)))
        return chunks


def fingerprint(model_id: str, chunker: Chunker) -> str:
    """Everything that shapes the vectors; a change forces a full rebuild."""
    parts = {"model": model_id, **chunker.fingerprint_parts()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
