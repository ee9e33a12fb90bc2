"""Ingest: plan the change, build a new index version beside the active one, check it, publish it."""

from __future__ import annotations

import fcntl
import gc
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from ..config import Settings
from ..embeddings import Embedder
from ..errors import IndexInvalid, IndexMissing, IngestLocked
from .chunking import Chunk, Chunker, fingerprint, searchable
from .corpus import Article, ArticleInfo, default_safety
from .ledger import DatabaseLedgers, FileLedgers, Ledger, Scan, chunk_sections, scan_corpus
from .lexical import common_terms, count_terms
from .manifest import Manifest
from .store import IndexStore

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

EMBED_BLOCK = 512
Gate = Callable[[Manifest, "Collection"], tuple[bool, str]]


@dataclass
class Plan:
    base: Manifest | None  # the version the new one starts from; None means a full rebuild
    reason: str
    desired: dict[str, tuple[str, str]]  # chunk id -> (source, section), every chunk the new version holds
    added: list[Chunk] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    changed_sections: set[tuple[str, str]] = field(default_factory=set)
    term_counts: Counter[str] = field(default_factory=Counter)  # term -> chunks of the new version holding it
    from_ledger: bool = False  # unchanged files and the base's contents came from the base's ledger

    @property
    def empty(self) -> bool:
        return self.base is not None and not self.added and not self.removed


@dataclass
class IngestReport:
    version: int | None
    added: int = 0
    changed_sections: int = 0
    removed: int = 0
    unchanged: int = 0
    articles: int = 0
    articles_read: int = 0  # files parsed and chunked; the others were unchanged since the last version
    seconds: float = 0.0
    published: bool = False
    refused: bool = False  # the gate failed: nothing was published
    message: str = ""

    @classmethod
    def of(cls, plan: Plan, scan: Scan, active: Manifest | None) -> IngestReport:
        """What a plan will change, before anything is written."""
        return cls(
            version=active.version if active else None,
            added=len(plan.added),
            removed=len(plan.removed),
            unchanged=plan.unchanged,
            changed_sections=len(plan.changed_sections),
            articles=len(scan.files),
            articles_read=scan.parsed,
        )

    def summary(self) -> str:
        return (
            f"{self.message}\n"
            f"  articles: {self.articles} ({self.articles_read} read anew)  chunks added: {self.added}  removed: {self.removed}  "
            f"unchanged: {self.unchanged}  sections changed: {self.changed_sections}\n"
            f"  took {self.seconds:.2f} s"
        )


@contextmanager
def _older_objects_frozen() -> Iterator[None]:
    """Leave the objects already alive (the loaded model, above all) out of the cyclic collector's passes
    while ingest runs: each full pass over them costs about 0.3 s, several times a one-article reindex."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def writer_lock(index_dir: Path) -> Iterator[None]:
    """One ingest at a time; a second one is refused, never queued behind a stuck one."""
    index_dir.mkdir(parents=True, exist_ok=True)
    path = index_dir / "ingest.lock"
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise IngestLocked(
                f"another ingest is running ({holder}); wait for it to finish, then run this again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class Coordination:
    """Where ingest keeps its writer lock and its ledgers.

    One machine: a lock file and ledger files beside the index. With a database server
    (``ASSISTANT_DATABASE_URL=postgresql://…``): a PostgreSQL advisory lock and a ledgers table,
    so ingests from any maintainer host exclude each other and read the same ledger.
    """

    lock: Callable[[], AbstractContextManager[None]]
    ledgers: FileLedgers | DatabaseLedgers
    description: str = "files beside the index"

    @classmethod
    def local(cls, index_dir: Path) -> Coordination:
        return cls(lambda: writer_lock(index_dir), FileLedgers(index_dir))

    @classmethod
    def from_settings(cls, settings: Settings) -> Coordination:
        if not settings.database_url:
            return cls.local(settings.index_dir)
        from ..database import advisory_lock, database_url, is_server, open_database

        engine = open_database(database_url(settings))
        if is_server(engine):
            return cls(lambda: advisory_lock(engine), DatabaseLedgers(engine), "the database server")
        return cls(lambda: writer_lock(settings.index_dir), DatabaseLedgers(engine), "the database")


def desired_chunks(articles: list[Article], chunker: Chunker) -> dict[str, Chunk]:
    return {chunk.chunk_id: chunk for article in articles for chunk in chunker.split(article)}


def choose_base(active: Manifest | None, wanted: str, model_id: str, full: bool) -> tuple[Manifest | None, str]:
    """The version to update, or None (and why) when everything must be embedded again."""
    if active is None:
        return None, "no index yet: building it"
    if full:
        return None, "full rebuild requested"
    if active.fingerprint != wanted:
        return None, (
            f"the index was built with other settings (model {active.model!r}, "
            f"fingerprint {active.fingerprint}); rebuilding everything for {model_id!r}"
        )
    return active, f"updating version {active.version}"


def _read_back(collection: Collection) -> dict[str, tuple[str, str]]:
    existing = collection.get(include=["metadatas"])
    return {
        record_id: (str(meta["source"]), str(meta["section"]))
        for record_id, meta in zip(existing["ids"], existing["metadatas"] or [], strict=True)
    }


def make_plan(
    store: IndexStore,
    active: Manifest | None,
    corpus_dir: Path,
    index_dir: Path,
    chunker: Chunker,
    model_id: str,
    full: bool = False,
    ledgers: FileLedgers | DatabaseLedgers | None = None,
) -> tuple[Plan, Scan]:
    """What the new version needs: the corpus scanned (only changed files parsed) and diffed against ``active``."""
    base, reason = choose_base(active, fingerprint(model_id, chunker), model_id, full)
    ledgers = ledgers or FileLedgers(index_dir)
    ledger = ledgers.load(base) if base is not None else None
    present: dict[str, tuple[str, str]] = {}
    collection = None
    if base is not None:
        try:
            collection = store.open(base)
            # The ledger was written with the base: what it lists is what the base holds (and the new
            # version's chunk count is checked before it is published).
            present = chunk_sections(ledger.files) if ledger is not None else _read_back(collection)
        except Exception as exc:  # a damaged base is rebuilt from the corpus, never copied
            reason = f"version {base.version} cannot be read ({exc}); rebuilding everything"
            base, ledger = None, None
    scan = scan_corpus(corpus_dir, chunker, ledger)
    desired = chunk_sections(scan.files)
    plan = Plan(base, reason, desired, from_ledger=ledger is not None)
    if base is None:
        plan.added = list(scan.fresh.values())
        plan.term_counts = count_terms(c.searchable for c in plan.added)
        return plan, scan
    plan.added = [scan.fresh[cid] for cid in desired if cid not in present]
    plan.removed = [cid for cid in present if cid not in desired]
    plan.unchanged = len(desired) - len(plan.added)
    plan.changed_sections = {(c.source, c.section) for c in plan.added} & {present[cid] for cid in plan.removed}
    if ledger is None:
        plan.term_counts = count_terms(c.searchable for c in scan.fresh.values())
    else:  # the base's counts, less the chunks going, plus the chunks coming
        counts = ledger.term_counts.copy()
        counts.update(count_terms(c.searchable for c in plan.added))
        assert collection is not None  # a ledger is only used with the base it was written with
        counts.subtract(_removed_terms(collection, plan.removed, present))
        plan.term_counts = +counts  # drops the terms no chunk holds any more
    return plan, scan


def _removed_terms(collection: Collection, removed: list[str], present: dict[str, tuple[str, str]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for start in range(0, len(removed), EMBED_BLOCK):
        got = collection.get(ids=removed[start : start + EMBED_BLOCK], include=["documents"])
        pairs = zip(got["ids"], got["documents"] or [], strict=True)
        counts.update(count_terms(searchable(present[record_id][1], text) for record_id, text in pairs))
    return counts


def _embed_into(collection: Collection, chunks: list[Chunk], embedder: Embedder, progress: bool) -> None:
    """Embed in blocks; the store writes one block while the model embeds the next."""
    bar = tqdm(total=len(chunks), unit="chunk", desc="Embedding", disable=not progress or None)
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        for start in range(0, len(chunks), EMBED_BLOCK):
            block = chunks[start : start + EMBED_BLOCK]
            vectors = embedder.encode([c.text for c in block])
            if pending is not None:
                pending.result()
            pending = writer.submit(
                collection.add,
                ids=[c.chunk_id for c in block],
                embeddings=vectors,
                documents=[c.text for c in block],
                metadatas=[c.metadata() for c in block],
            )
            bar.update(len(block))
        if pending is not None:
            pending.result()
    bar.close()


def _verify(collection: Collection, plan: Plan, manifest: Manifest, embedder: Embedder) -> None:
    """Refuse to publish a version that is incomplete or cannot answer."""
    count = collection.count()
    if count != len(plan.desired):
        raise IndexInvalid(f"new version holds {count} chunks, expected {len(plan.desired)}; not published")
    safety = manifest.safety_for()
    if not all(safety.values()):
        raise IndexInvalid("new version lacks the safety text; not published")
    title = manifest.title_of(manifest.default_source)
    hits = collection.query(query_embeddings=embedder.encode([title]), n_results=1, include=["metadatas"])
    if not hits["ids"][0]:
        raise IndexInvalid("new version returns nothing for a smoke question; not published")


def build_manifest(version: int, plan: Plan, infos: list[ArticleInfo], model_id: str, fp: str) -> Manifest:
    default_source, _ = default_safety(infos)
    per_article = Counter(source for source, _section in plan.desired.values())
    return Manifest(
        version=version,
        fingerprint=fp,
        model=model_id,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        chunks=len(plan.desired),
        articles={
            a.source: {
                "title": a.title,
                "reviewed": a.reviewed,
                "chunks": per_article[a.source],
                "safety": a.safety,
                "subject": list(a.subject),
                "topic": list(a.topic),
                "phrasings": {key: list(questions) for key, questions in a.phrasings},
            }
            for a in infos
        },
        default_source=default_source,
        parent=plan.base.version if plan.base else None,
        term_chunks=len(plan.desired),
        term_frequencies=common_terms(plan.term_counts),
    )


def ingest(
    store: IndexStore,
    corpus_dir: Path,
    index_dir: Path,
    embedder: Embedder,
    chunker: Chunker,
    *,
    dry_run: bool = False,
    full: bool = False,
    keep_versions: int = 2,
    gate: Gate | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda _line: None,
    coordination: Coordination | None = None,
) -> IngestReport:
    """Publish the corpus as a new version of the index, if anything changed (see the module's docstring)."""
    started = time.perf_counter()
    shared = coordination or Coordination.local(index_dir)
    with _older_objects_frozen(), shared.lock():
        active = store.active()
        stale = [v for v in store.versions() if active is None or v > active.version]
        plan, scan = make_plan(
            store, active, corpus_dir, index_dir, chunker, embedder.model_id, full=full, ledgers=shared.ledgers
        )
        log(plan.reason)
        for warning in scan.warnings:
            log(f"warning: {warning}")
        report = IngestReport.of(plan, scan, active)
        fp = fingerprint(embedder.model_id, chunker)
        candidate = build_manifest((active.version if active else 0) + 1, plan, scan.infos, embedder.model_id, fp)
        metadata_changed = active is not None and (
            active.articles != candidate.articles or active.default_source != candidate.default_source
        )
        if plan.empty and not metadata_changed:
            report.message = f"Index is up to date (version {active.version if active else '-'}); nothing to do."
            if active is not None and not plan.from_ledger and not dry_run:  # so the next ingest can use one
                shared.ledgers.save(Ledger(active.version, active.built_at, fp, scan.files, plan.term_counts))
        elif dry_run:
            report.message = f"Dry run: would publish a new version ({plan.reason}); nothing written."
        else:
            manifest, refusal = _build_version(store, active, stale, candidate, plan, embedder, gate, progress)
            if refusal is not None:
                report.refused = True
                report.message = f"Gate failed: version {manifest.version} was not published.\n{refusal}"
                report.seconds = time.perf_counter() - started
                return report
            version = manifest.version
            manifest.stats = {"seconds": round(time.perf_counter() - started, 3)}
            store.seal(version, manifest)
            shared.ledgers.save(Ledger(version, manifest.built_at, fp, scan.files, plan.term_counts))
            store.publish(manifest)
            prune(store, keep_versions)
            shared.ledgers.prune(store.versions())
            report.version, report.published = version, True
            report.message = f"Published index version {version} ({manifest.chunks} chunks) to {store.description}."
        report.seconds = time.perf_counter() - started
        return report


def _build_version(
    store: IndexStore,
    active: Manifest | None,
    stale: list[int],
    candidate: Manifest,
    plan: Plan,
    embedder: Embedder,
    gate: Gate | None,
    progress: bool,
) -> tuple[Manifest, str | None]:
    """The next version, built beside the active one and checked; not yet published.

    Returns its manifest, and why the gate refused it (then it is dropped again), or None."""
    for version in stale:  # left by an ingest that was stopped half-way
        store.drop(version)
    version = max([*store.versions(), active.version if active else 0]) + 1
    manifest = replace(candidate, version=version)
    collection = store.create(version, plan.base)
    if plan.removed:
        collection.delete(ids=plan.removed)
    _embed_into(collection, plan.added, embedder, progress)
    _verify(collection, plan, manifest, embedder)
    if gate is not None:
        passed, detail = gate(manifest, collection)
        if not passed:
            store.drop(version)
            return manifest, detail
    return manifest, None


def prune(store: IndexStore, keep_versions: int) -> None:
    """Keep the active version and the ones before it that rollback may need."""
    active = store.active()
    if active is None:
        return
    older = [v for v in store.versions() if v < active.version]
    for version in older[: max(0, len(older) - (keep_versions - 1))]:
        store.drop(version)


def rollback(store: IndexStore, index_dir: Path, coordination: Coordination | None = None) -> Manifest:
    with (coordination or Coordination.local(index_dir)).lock():
        active = store.active()
        if active is None:
            raise IndexMissing("no index yet, so nothing to roll back: run python ingest.py")
        previous = [m for v in reversed(store.versions()) if v < active.version and (m := store.manifest(v))]
        if not previous:
            raise IndexMissing(f"version {active.version} is the only one kept; there is nothing to roll back to")
        store.publish(previous[0])
        return previous[0]
