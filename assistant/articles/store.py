"""Versioned Chroma indexes: every published version is immutable; one pointer names the active one.

An ingest builds version N+1 beside the active version N (a copy of N's vectors for an
incremental update, an empty collection for a full rebuild), checks it, and then switches
the pointer in one step. Readers open whichever version the pointer names, so they never see
a half-built index, and the previous version stays for ``ingest.py --rollback``.

Two back ends share that contract:

- ``LocalStore``: embedded Chroma, one folder per version, the pointer an ``ACTIVE.json``
  replaced atomically. A version folder is never written once published, which is what lets
  another process (the running app) read it safely.
- ``ServerStore``: a Chroma server (``chroma run``), one collection per version, the pointer
  a record in a small metadata collection.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ..errors import IndexInvalid, StoreUnavailable
from .manifest import Manifest

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

CHUNKS = "chunks"
COPY_PAGE = 2000


def chroma_settings() -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False, allow_reset=False)


def _collection(client: ClientAPI, name: str, create: bool = False) -> Collection:
    if create:
        return client.get_or_create_collection(
            name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )
    return client.get_collection(name, embedding_function=None)


def copy_records(source: Collection, target: Collection) -> int:
    """Copy every record with its stored vector: nothing is re-embedded."""
    copied = 0
    while page := source.get(include=["embeddings", "documents", "metadatas"], limit=COPY_PAGE, offset=copied):
        if not page["ids"]:
            break
        target.add(
            ids=page["ids"],
            embeddings=page["embeddings"],
            documents=page["documents"],
            metadatas=page["metadatas"],
        )
        copied += len(page["ids"])
    return copied


class IndexStore:
    """The operations ingest and retrieval need, whatever holds the vectors."""

    description = ""

    def active(self) -> Manifest | None:
        raise NotImplementedError

    def pointer_token(self) -> object:
        """Cheap value that changes whenever the pointer moves."""
        raise NotImplementedError

    def open(self, manifest: Manifest) -> Collection:
        raise NotImplementedError

    def versions(self) -> list[int]:
        """Versions present in the store, published or not, oldest first."""
        raise NotImplementedError

    def manifest(self, version: int) -> Manifest | None:
        raise NotImplementedError

    def create(self, version: int, base: Manifest | None) -> Collection:
        """A writable collection for a new version, holding ``base``'s records if given."""
        raise NotImplementedError

    def seal(self, version: int, manifest: Manifest) -> None:
        """Finish writing a version: after this it is read-only."""
        raise NotImplementedError

    def publish(self, manifest: Manifest) -> None:
        raise NotImplementedError

    def drop(self, version: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalStore(IndexStore):
    POINTER = "ACTIVE.json"

    def __init__(self, index_dir: Path) -> None:
        self.root = index_dir
        self.description = f"embedded Chroma in {index_dir}"
        self._readers: dict[int, ClientAPI] = {}
        self._reader_files: dict[int, tuple[int, int]] = {}  # version -> (device, inode) its reader opened
        self._writers: dict[int, ClientAPI] = {}
        self._lock = threading.Lock()

    def _dir(self, version: int) -> Path:
        return self.root / f"v{version:06d}"

    def _client(self, path: Path) -> ClientAPI:
        import chromadb

        try:
            return chromadb.PersistentClient(path=str(path), settings=chroma_settings())
        except Exception as exc:  # Chroma raises many types for a damaged folder
            raise StoreUnavailable(
                f"cannot open the index in {path} ({exc}): run python ingest.py --full to rebuild it"
            ) from exc

    def active(self) -> Manifest | None:
        try:
            text = (self.root / self.POINTER).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {self.root / self.POINTER}: {exc}") from exc
        try:
            return Manifest.from_json(text)
        except json.JSONDecodeError:
            raise IndexInvalid(
                f"{self.root / self.POINTER} is damaged: run python ingest.py --rollback or python ingest.py"
            ) from None

    def pointer_token(self) -> object:
        try:
            st = (self.root / self.POINTER).stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def open(self, manifest: Manifest) -> Collection:
        path = self._dir(manifest.version)
        try:
            st = (path / "chroma.sqlite3").stat()
        except FileNotFoundError:
            raise StoreUnavailable(
                f"index version {manifest.version} is missing from {self.root}: run python ingest.py --full"
            ) from None
        with self._lock:
            client = self._readers.get(manifest.version)
            if client is not None and self._reader_files.get(manifest.version) != (st.st_dev, st.st_ino):
                # The folder was deleted and rebuilt under the same name: the open client would
                # go on reading the deleted files.
                self._close(self._readers.pop(manifest.version))
                client = None
            if client is None:
                client = self._readers[manifest.version] = self._client(path)
                self._reader_files[manifest.version] = (st.st_dev, st.st_ino)
            # Release clients of versions that are no longer current.
            for version in [v for v in self._readers if v != manifest.version]:
                self._close(self._readers.pop(version))
        try:
            return _collection(client, CHUNKS)
        except Exception as exc:
            raise StoreUnavailable(
                f"index version {manifest.version} in {path} is unreadable ({exc}): run python ingest.py --full"
            ) from exc

    def versions(self) -> list[int]:
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.glob("v[0-9]*"):
            if path.is_dir() and path.name[1:].isdigit():
                found.append(int(path.name[1:]))
        return sorted(found)

    def manifest(self, version: int) -> Manifest | None:
        try:
            return Manifest.from_json((self._dir(version) / "manifest.json").read_text("utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, IndexInvalid):
            return None

    def create(self, version: int, base: Manifest | None) -> Collection:
        path = self._dir(version)
        shutil.rmtree(path, ignore_errors=True)
        if base is not None:
            shutil.copytree(self._dir(base.version), path)
            (path / "manifest.json").unlink(missing_ok=True)
        else:
            path.mkdir(parents=True)
        client = self._writers[version] = self._client(path)
        return _collection(client, CHUNKS, create=True)

    def seal(self, version: int, manifest: Manifest) -> None:
        client = self._writers.pop(version, None)
        if client is not None:
            self._close(client)  # flushes the vectors to disk before anyone copies or reads them
        write_atomic(self._dir(version) / "manifest.json", manifest.to_json())

    def publish(self, manifest: Manifest) -> None:
        write_atomic(self.root / self.POINTER, manifest.to_json())

    def drop(self, version: int) -> None:
        with self._lock:
            if version in self._readers:
                self._close(self._readers.pop(version))
        if version in self._writers:
            self._close(self._writers.pop(version))
        shutil.rmtree(self._dir(version), ignore_errors=True)

    def close(self) -> None:
        for clients in (self._readers, self._writers):
            while clients:
                self._close(clients.popitem()[1])

    @staticmethod
    def _close(client: ClientAPI) -> None:
        try:
            client.close()  # type: ignore[attr-defined]
        except Exception:  # noqa: S110 - a client that is already gone needs no closing
            pass


class ServerStore(IndexStore):
    META = "assistant-meta"
    ACTIVE = "active"

    def __init__(self, url: str) -> None:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (443 if parsed.scheme == "https" else 8000)
        self.ssl = parsed.scheme == "https"
        self.description = f"Chroma server at {url}"
        self._client_obj: ClientAPI | None = None

    @property
    def client(self) -> ClientAPI:
        if self._client_obj is None:
            import chromadb

            try:
                self._client_obj = chromadb.HttpClient(
                    host=self.host, port=self.port, ssl=self.ssl, settings=chroma_settings()
                )
            except Exception as exc:
                raise StoreUnavailable(
                    f"cannot reach the Chroma server at {self.host}:{self.port} ({exc}): "
                    "start it (chroma run) or unset ASSISTANT_CHROMA_URL"
                ) from exc
        return self._client_obj

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StoreUnavailable:
            raise
        except Exception as exc:
            self._client_obj = None  # reconnect next time: the server may come back
            raise StoreUnavailable(
                f"Chroma server at {self.host}:{self.port} failed to {what} ({type(exc).__name__}: {exc})"
            ) from exc

    def _meta(self) -> Collection:
        return self._call("open its metadata", _collection, self.client, self.META, True)

    @staticmethod
    def _name(version: int) -> str:
        return f"assistant-v{version:06d}"

    def _read_meta(self, record: str) -> Manifest | None:
        got = self._call("read the index pointer", self._meta().get, ids=[record], include=["documents"])
        if not got["ids"]:
            return None
        return Manifest.from_json(got["documents"][0])

    def _write_meta(self, record: str, manifest: Manifest) -> None:
        self._call(
            "write the index pointer",
            self._meta().upsert,
            ids=[record],
            embeddings=[[1.0]],
            documents=[manifest.to_json()],
        )

    def active(self) -> Manifest | None:
        return self._read_meta(self.ACTIVE)

    def pointer_token(self) -> object:
        manifest = self.active()
        return None if manifest is None else (manifest.version, manifest.built_at)

    def open(self, manifest: Manifest) -> Collection:
        return self._call(
            f"open index version {manifest.version}", _collection, self.client, self._name(manifest.version)
        )

    def versions(self) -> list[int]:
        names = self._call("list collections", self.client.list_collections)
        found = []
        for item in names:
            name = getattr(item, "name", item)
            if name.startswith("assistant-v") and name[11:].isdigit():
                found.append(int(name[11:]))
        return sorted(found)

    def manifest(self, version: int) -> Manifest | None:
        return self._read_meta(f"v{version}")

    def create(self, version: int, base: Manifest | None) -> Collection:
        self.drop(version)
        target = self._call("create a collection", _collection, self.client, self._name(version), True)
        if base is not None:
            self._call("copy the previous version", copy_records, self.open(base), target)
        return target

    def seal(self, version: int, manifest: Manifest) -> None:
        self._write_meta(f"v{version}", manifest)

    def publish(self, manifest: Manifest) -> None:
        self._write_meta(self.ACTIVE, manifest)

    def drop(self, version: int) -> None:
        try:
            self.client.delete_collection(self._name(version))
        except Exception:  # noqa: S110 - absent already
            pass
        self._call("drop a version record", self._meta().delete, ids=[f"v{version}"])


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def open_store(index_dir: Path, chroma_url: str | None) -> IndexStore:
    return ServerStore(chroma_url) if chroma_url else LocalStore(index_dir)
