"""Read side of the index: follows the active version, refuses a model mismatch, returns scored hits."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..articles.lexical import mentions
from ..articles.manifest import Manifest
from ..articles.store import IndexStore, ServerStore
from ..errors import IndexMissing, ModelMismatch, StoreUnavailable

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    article: str
    source: str
    section: str
    text: str
    score: float  # relevance: cosine similarity plus the weighted word overlap
    position: int
    dense: float = 0.0  # cosine similarity alone


@dataclass(frozen=True)
class Scoped:
    """The chunks of a few articles (or of a small index), held in memory: a question about their
    subject is searched here, exactly and in microseconds, rather than through a filtered query
    over the whole index."""

    ids: list[str]
    texts: list[str]
    metadatas: list[dict]
    vectors: np.ndarray


SCOPE_CACHE = 32  # scopes kept per snapshot; each is a set of articles that declare subject words


@dataclass(frozen=True)
class Snapshot:
    """One published version, opened: a query uses one snapshot from start to end."""

    manifest: Manifest
    collection: Collection
    subjects: dict[str, list[str]]  # source -> its subject words, for articles with some
    topics: tuple[str, ...]  # what the articles are about ("dry needling")
    phrasings: dict[str, dict[str, list[str]]]  # source -> {key phrase: questions}
    # An index of at most this many chunks is searched whole in memory (ASSISTANT_IN_MEMORY_CHUNKS).
    in_memory_chunks: int = 1000
    _scoped: dict[tuple[str, ...], Scoped] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, manifest: Manifest, collection: Collection, in_memory_chunks: int = 1000) -> Snapshot:
        """``collection`` opened as ``manifest``'s version, with what its articles declare read once."""
        articles = manifest.articles
        return cls(
            manifest,
            collection,
            subjects={source: list(a["subject"]) for source, a in articles.items() if a.get("subject")},
            topics=tuple(dict.fromkeys(t for a in articles.values() for t in a.get("topic") or ())),
            phrasings={source: a["phrasings"] for source, a in articles.items() if a.get("phrasings")},
            in_memory_chunks=in_memory_chunks,
        )

    def scope(self, question: str) -> list[str]:
        """The articles whose subject words the question uses; none when it uses none (or every article's)."""
        named = [source for source, phrases in self.subjects.items() if mentions(question, phrases)]
        return named if len(named) < len(self.manifest.articles) else []

    def search(self, vector: np.ndarray, k: int, scope: list[str] | None = None) -> list[Hit]:
        """The ``k`` nearest chunks by cosine similarity, from the ``scope`` articles if given."""
        if scope or self.manifest.chunks <= self.in_memory_chunks:
            chunks = self._scoped_chunks(scope or [])
            similarity = chunks.vectors @ vector
            best = np.argsort(-similarity, kind="stable")[:k]
            return [_hit(chunks.ids[i], chunks.texts[i], chunks.metadatas[i], float(similarity[i])) for i in best]
        try:
            found: Any = self.collection.query(
                query_embeddings=vector.reshape(1, -1), n_results=k, include=["documents", "metadatas", "distances"]
            )
        except Exception as exc:  # a damaged file or a server gone away: Chroma raises many types
            raise StoreUnavailable(
                f"index version {self.manifest.version} could not be searched ({type(exc).__name__}: {exc})"
            ) from exc
        return [
            _hit(record_id, text, meta, 1.0 - float(distance))
            for record_id, text, meta, distance in zip(
                found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0], strict=True
            )
        ]

    def _scoped_chunks(self, scope: list[str]) -> Scoped:
        key = tuple(scope)
        chunks = self._scoped.get(key)
        if chunks is not None:
            return chunks
        where: Any = {"source": {"$in": scope}} if scope else None
        try:
            got: Any = self.collection.get(where=where, include=["documents", "metadatas", "embeddings"])
        except Exception as exc:  # as in search
            raise StoreUnavailable(
                f"index version {self.manifest.version} could not be read ({type(exc).__name__}: {exc})"
            ) from exc
        texts, metadatas = list(got["documents"] or []), list(got["metadatas"] or [])
        vectors = np.asarray(got["embeddings"], dtype=np.float32).reshape(len(texts), -1)
        chunks = Scoped(list(got["ids"]), texts, metadatas, vectors)
        if len(self._scoped) >= SCOPE_CACHE:
            self._scoped.clear()
        self._scoped[key] = chunks
        return chunks


def _hit(record_id: str, text: str, meta: dict, similarity: float) -> Hit:
    return Hit(
        record_id,
        str(meta["article"]),
        str(meta["source"]),
        str(meta["section"]),
        text,
        similarity,
        int(meta["position"]),
        similarity,
    )


class IndexReader:
    """Hands out the current snapshot, switching when ingest publishes a new version."""

    def __init__(
        self, store: IndexStore, model_id: str, recheck_seconds: float | None = None, in_memory_chunks: int = 1000
    ) -> None:
        self.store = store
        self.model_id = model_id
        self.in_memory_chunks = in_memory_chunks
        # A local pointer is a file stat (microseconds); a server pointer is a request.
        self.recheck_seconds = (
            recheck_seconds if recheck_seconds is not None else (1.0 if isinstance(store, ServerStore) else 0.0)
        )
        self._snapshot: Snapshot | None = None
        self._token: object = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        current = self._snapshot
        if current is not None and now - self._checked < self.recheck_seconds:
            return current
        token = self.store.pointer_token()
        if current is not None and token == self._token:
            self._checked = now
            return current
        with self._lock:
            if self._snapshot is not None and self._token == token:
                return self._snapshot
            manifest = self.store.active()
            if manifest is None:
                raise IndexMissing("no index yet: run python ingest.py")
            if manifest.model != self.model_id:
                raise ModelMismatch(
                    f"the index was built with embedding model {manifest.model!r} but the settings say "
                    f"{self.model_id!r}: run python ingest.py to rebuild it, or set "
                    f"ASSISTANT_EMBED_MODEL={manifest.model}"
                )
            self._snapshot = Snapshot.of(manifest, self.store.open(manifest), self.in_memory_chunks)
            self._token, self._checked = token, now
            return self._snapshot

    def forget(self) -> None:
        """Drop the open snapshot so the next call reopens the store (after a failure)."""
        with self._lock:
            self._snapshot, self._token = None, None


class Reader(Protocol):
    """Where ``Assistant`` gets the version it answers from: the live index, or one pinned version."""

    def snapshot(self) -> Snapshot: ...

    def forget(self) -> None: ...


class PinnedReader:
    """A reader fixed to one snapshot: used to test a candidate version before it is published."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def forget(self) -> None:
        """A pinned snapshot is never reopened."""
