"""Read side of the index: follows the active version, refuses a model mismatch, returns scored hits."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import IndexMissing, ModelMismatch
from .store import IndexStore, Manifest, ServerStore

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    article: str
    source: str
    section: str
    text: str
    score: float  # cosine similarity, 1.0 = same direction
    position: int


@dataclass(frozen=True)
class Snapshot:
    """One published version, opened: a query uses one snapshot from start to end."""

    manifest: Manifest
    collection: Collection

    def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        found = self.collection.query(
            query_embeddings=vector.reshape(1, -1), n_results=k, include=["documents", "metadatas", "distances"]
        )
        return [
            Hit(
                chunk_id=record_id,
                article=str(meta["article"]),
                source=str(meta["source"]),
                section=str(meta["section"]),
                text=text,
                score=1.0 - float(distance),
                position=int(meta["position"]),
            )
            for record_id, text, meta, distance in zip(
                found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0], strict=True
            )
        ]


class IndexReader:
    """Hands out the current snapshot, switching when ingest publishes a new version."""

    def __init__(self, store: IndexStore, model_id: str, recheck_seconds: float | None = None) -> None:
        self.store = store
        self.model_id = model_id
        # A local pointer is a file stat (microseconds); a server pointer is a request.
        self.recheck_seconds = recheck_seconds if recheck_seconds is not None else (
            1.0 if isinstance(store, ServerStore) else 0.0
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
            self._snapshot = Snapshot(manifest, self.store.open(manifest))
            self._token, self._checked = token, now
            return self._snapshot

    def forget(self) -> None:
        """Drop the open snapshot so the next call reopens the store (after a failure)."""
        with self._lock:
            self._snapshot, self._token = None, None
