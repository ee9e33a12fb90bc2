"""What an index version was built from, so the next ingest re-reads only what changed.

For every article file the ledger keeps the SHA-256 of its bytes, what the index needs to know
of the article (title, safety text, subject words) and its chunks' ids and sections; for the
whole version, how many chunks hold each term. The next ingest hashes each file, parses and
chunks only the files whose bytes changed, and knows which chunks the version holds without
reading the index back.

The ledger is a shortcut, never the truth: one that is missing, damaged or written for another
version (or other settings) is ignored, and ingest parses every file and reads the index instead.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select

from .chunking import Chunk, Chunker
from .corpus import (
    ArticleInfo,
    article_paths,
    check_article,
    check_phrasings,
    parse_article,
    phrasings_path,
    stop_on,
)
from .manifest import Manifest
from .store import write_atomic

FOLDER = "ledgers"
FORMAT = 1


@dataclass(frozen=True)
class FileEntry:
    sha: str
    info: ArticleInfo
    chunks: tuple[tuple[str, str], ...]  # (chunk id, section), in the article's order


@dataclass
class Ledger:
    version: int
    built_at: str
    fingerprint: str
    files: dict[str, FileEntry]
    term_counts: Counter[str]  # term -> chunks holding it, every term

    def describes(self, manifest: Manifest) -> bool:
        return (self.version, self.built_at, self.fingerprint) == (
            manifest.version,
            manifest.built_at,
            manifest.fingerprint,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "version": self.version,
                "built_at": self.built_at,
                "fingerprint": self.fingerprint,
                "files": {
                    source: {"sha": e.sha, "info": asdict(e.info), "chunks": e.chunks}
                    for source, e in self.files.items()
                },
                "term_counts": self.term_counts,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Ledger:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"ledger format {data.get('format')!r}, expected {FORMAT}")
        files = {}
        for source, entry in data["files"].items():
            info = entry["info"]
            info["subject"] = tuple(info.get("subject") or ())
            info["topic"] = tuple(info.get("topic") or ())
            info["phrasings"] = tuple((str(key), tuple(questions)) for key, questions in info.get("phrasings") or ())
            files[source] = FileEntry(
                entry["sha"], ArticleInfo(**info), tuple((str(cid), str(sec)) for cid, sec in entry["chunks"])
            )
        return cls(data["version"], data["built_at"], data["fingerprint"], files, Counter(data["term_counts"]))


def ledger_path(index_dir: Path, version: int) -> Path:
    return index_dir / FOLDER / f"v{version:06d}.json"


def load_ledger(index_dir: Path, manifest: Manifest) -> Ledger | None:
    """The ledger written with ``manifest``'s version, or None if there is no usable one."""
    try:
        ledger = Ledger.from_json(ledger_path(index_dir, manifest.version).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ledger if ledger.describes(manifest) else None


def save_ledger(index_dir: Path, ledger: Ledger) -> None:
    write_atomic(ledger_path(index_dir, ledger.version), ledger.to_json())


def prune_ledgers(index_dir: Path, keep: Iterable[int]) -> None:
    kept = {ledger_path(index_dir, version).name for version in keep}
    for path in (index_dir / FOLDER).glob("v*.json"):
        if path.name not in kept:
            path.unlink(missing_ok=True)


class FileLedgers:
    """Ledgers as files beside a local index (``ledgers/v000001.json``)."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir

    def load(self, manifest: Manifest) -> Ledger | None:
        return load_ledger(self.index_dir, manifest)

    def save(self, ledger: Ledger) -> None:
        save_ledger(self.index_dir, ledger)

    def prune(self, keep: Iterable[int]) -> None:
        prune_ledgers(self.index_dir, keep)


class DatabaseLedgers:
    """Ledgers in the app's database, where every maintainer host sees the one an ingest left."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, manifest: Manifest) -> Ledger | None:
        from ..database import ledgers

        try:
            with self.engine.connect() as db:
                body = db.execute(select(ledgers.c.body).where(ledgers.c.version == manifest.version)).scalar()
            ledger = Ledger.from_json(body) if body is not None else None
        except (ValueError, KeyError, TypeError):
            return None
        return ledger if ledger is not None and ledger.describes(manifest) else None

    def save(self, ledger: Ledger) -> None:
        from ..database import ledgers

        with self.engine.begin() as db:
            db.execute(ledgers.delete().where(ledgers.c.version == ledger.version))
            db.execute(ledgers.insert().values(version=ledger.version, body=ledger.to_json()))

    def prune(self, keep: Iterable[int]) -> None:
        from ..database import ledgers

        with self.engine.begin() as db:
            db.execute(ledgers.delete().where(ledgers.c.version.not_in(list(keep))))


@dataclass
class Scan:
    """The corpus as this ingest found it."""

    files: dict[str, FileEntry]  # every article, by source
    fresh: dict[str, Chunk] = field(default_factory=dict)  # chunks of the files parsed this time, by id
    warnings: list[str] = field(default_factory=list)  # stale phrasings of the files parsed this time
    parsed: int = 0  # files parsed (the rest were unchanged since the ledger)

    @property
    def infos(self) -> list[ArticleInfo]:
        return [entry.info for entry in self.files.values()]


def chunk_sections(files: dict[str, FileEntry]) -> dict[str, tuple[str, str]]:
    """Chunk id -> (source, section) for every chunk of ``files``."""
    return {cid: (source, section) for source, entry in files.items() for cid, section in entry.chunks}


def scan_corpus(corpus_dir: Path, chunker: Chunker, ledger: Ledger | None = None) -> Scan:
    """Every article, checked and chunked; files whose bytes match the ledger are taken from it.

    A file is reused only if its bytes are the ones the ledger's version was built from, so its
    checks passed then and its chunks (ids are content hashes) are already in that version.
    """
    scan = Scan(files={})
    problems: list[str] = []
    known = ledger.files if ledger else {}
    for path in article_paths(corpus_dir):
        raw = path.read_bytes()
        source = path.relative_to(corpus_dir).as_posix()
        sha = hashlib.sha256(raw).hexdigest()
        phrasings = phrasings_path(corpus_dir, source)
        if phrasings.is_file():  # the article's questions belong to it: editing them re-reads it
            sha = hashlib.sha256(sha.encode() + phrasings.read_bytes()).hexdigest()
        entry = known.get(source)
        if entry is not None and entry.sha == sha:
            scan.files[source] = entry
            continue
        article = parse_article(path, corpus_dir, raw)
        problems += check_article(article, path)
        scan.warnings += check_phrasings(article, path)
        chunks = chunker.split(article)
        scan.files[source] = FileEntry(sha, article.info(), tuple((c.chunk_id, c.section) for c in chunks))
        scan.fresh.update((c.chunk_id, c) for c in chunks)
        scan.parsed += 1
    stop_on(problems, len(scan.files), corpus_dir)
    return scan
