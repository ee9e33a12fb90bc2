"""The one place the parts are put together from settings: the CLI, the app, tests and benchmarks start here.

::

    settings ─┬─ build(settings)   → Assistant  (model loaded, triage examples embedded, index open)
              └─ reindex(settings) → IngestReport  (python ingest.py: corpus/ → a new published version)

Either takes an ``embedder`` already loaded (tests and benchmarks share one) and a ``store`` already
open (left open); anything not given is made from the settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings

KEPT_VECTORS = "answer-vectors.npz"  # in the index folder: see keep_answer_vectors

if TYPE_CHECKING:
    from .answering.retrieval import Reader
    from .answering.service import Assistant
    from .articles.chunking import Chunker
    from .articles.indexing import IngestReport
    from .articles.store import IndexStore
    from .embeddings import Embedder


def chunker(settings: Settings) -> Chunker:
    """How articles are cut into chunks: part of what an index records, so always from the settings."""
    from .articles.chunking import Chunker

    return Chunker(settings.chunk_size, settings.chunk_overlap)


@contextmanager
def opened(settings: Settings, store: IndexStore | None = None) -> Iterator[IndexStore]:
    """``store``, or the settings' store (embedded Chroma, or ``ASSISTANT_CHROMA_URL``) closed after use."""
    from .articles.store import open_store

    if store is not None:
        yield store
        return
    own = open_store(settings.index_dir, settings.chroma_url)
    try:
        yield own
    finally:
        own.close()


def build(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    store: IndexStore | None = None,
    reader: Reader | None = None,
    warm: bool = True,
) -> Assistant:
    """The assistant, ready for its first patient unless ``warm=False``."""
    from .answering.service import Assistant, Services
    from .answering.triage import load_rules
    from .articles.store import open_store
    from .embeddings import Embedder

    embedder = embedder or Embedder(settings.embed_model)
    if warm:
        embedder.load_kept(kept_vectors(settings))
    services = Services(
        settings=settings,
        embedder=embedder,
        store=store or open_store(settings.index_dir, settings.chroma_url),
        rules=load_rules(settings.corpus_dir),
    )
    assistant = Assistant(services, reader)
    if warm:
        assistant.warm()
    return assistant


def reindex(
    settings: Settings, *, embedder: Embedder | None = None, store: IndexStore | None = None, **options: Any
) -> IngestReport:
    """What ``python ingest.py`` does: the corpus, chunked as the settings say, published as a new version.

    ``options`` go to ``assistant.articles.indexing.ingest`` (``full``, ``dry_run``, ``gate``, ``progress``, …);
    the versions kept and the coordination (file lock, or the database's) come from the settings."""
    from .articles.indexing import Coordination, ingest
    from .embeddings import Embedder

    options.setdefault("progress", False)
    options.setdefault("keep_versions", settings.keep_versions)
    options.setdefault("coordination", Coordination.from_settings(settings))
    embedder = embedder or Embedder(settings.embed_model)
    with opened(settings, store) as target:
        report = ingest(target, settings.corpus_dir, settings.index_dir, embedder, chunker(settings), **options)
        if report.version is not None and not report.refused and not options.get("dry_run"):
            keep_answer_vectors(settings, embedder, target)
        return report


def kept_vectors(settings: Settings) -> Path:
    return settings.index_dir / KEPT_VECTORS


def keep_answer_vectors(settings: Settings, embedder: Embedder, store: IndexStore) -> None:
    """Save beside the index the vectors a starting assistant embeds (the red-flag and not-covered
    examples, the first passages' sentences and phrasings), so the app starts without embedding them
    again. Only a speed-up: a file that is missing or stale just means embedding them at start-up."""
    path = kept_vectors(settings)
    embedder.load_kept(path)
    with embedder.noting_kept() as used:
        build(settings, embedder=embedder, store=store, warm=False).warm()
    embedder.save_kept(path, used)
