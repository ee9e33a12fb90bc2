"""Ratings behind SQLAlchemy (SQLite by default, a real PostgreSQL when configured), the versioned
schema, and in server mode the ingest lock and ledgers in the database every host sees."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import CORPUS, build_index
from sqlalchemy import select

from assistant.articles.indexing import Coordination
from assistant.articles.store import open_store
from assistant.config import load_settings
from assistant.database import SCHEMA_VERSION, advisory_lock, open_database, schema_version
from assistant.edges.feedback import FeedbackStore
from assistant.errors import IngestLocked

pytestmark = pytest.mark.server

REPLY = {
    "question": "Is dry needling safe?",
    "answer": "It is generally safe.",
    "status": "answered",
    "sources": [{"article": "a.md", "section": "Safety", "chunk_id": "c1"}],
    "index_version": 3,
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    return request.getfixturevalue("postgres")()


def test_ratings_update_comment_and_export_alike_on_both_databases(database):
    store = FeedbackStore(database)
    store.rate("r1", REPLY, liked=True, comment="clear")
    store.rate("r1", REPLY, liked=False)  # a second click changes the rating and keeps the comment
    store.rate("r2", {**REPLY, "question": "=cmd"}, liked=True)
    assert store.comment("r2", "thanks") and not store.comment("missing", "lost")
    rows = store.rows()
    assert [(r[1], r[2], r[3]) for r in rows] == [("up", "thanks", "=cmd"), ("down", "clear", REPLY["question"])]
    assert rows[1][-1] == 3
    assert "'=cmd" in store.to_csv()
    store.close()


def test_schema_is_versioned_and_applied_once(database):
    engine = open_database(database)
    open_database(database).dispose()  # a second start finds nothing to do
    with engine.connect() as db:
        assert list(db.execute(select(schema_version.c.version)).scalars()) == [SCHEMA_VERSION]
    engine.dispose()


def test_a_feedback_file_from_before_versioning_is_upgraded_and_kept(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the table as the app created it before SQLAlchemy
        db.execute(
            "CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, reply_id TEXT NOT NULL UNIQUE, "
            "created_at TEXT NOT NULL, rating TEXT NOT NULL CHECK (rating IN ('up', 'down')), "
            "comment TEXT NOT NULL DEFAULT '', question TEXT NOT NULL, answer TEXT NOT NULL, status TEXT NOT NULL, "
            "sources TEXT NOT NULL, index_version INTEGER)"
        )
        db.execute(
            "INSERT INTO feedback (reply_id, created_at, rating, question, answer, status, sources) "
            "VALUES ('old', '2099-01-01T00:00:00+00:00', 'up', 'kept?', 'yes', 'answered', '[]')"
        )
    store = FeedbackStore(path)
    store.rate("new", REPLY, liked=False)
    assert [row[3] for row in store.rows()] == [REPLY["question"], "kept?"]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_a_database_newer_than_the_code_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.sqlite3'}"
    open_database(url).dispose()
    with sqlite3.connect(tmp_path / "new.sqlite3") as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(Exception, match="newer than this code"):
        open_database(url)


def test_advisory_lock_refuses_a_second_ingest_on_any_host(postgres):
    url = postgres()
    engine, other_host = open_database(url), open_database(url)  # two engines: two hosts' connections
    with advisory_lock(engine):
        with pytest.raises(IngestLocked, match="another ingest is running"):
            with advisory_lock(other_host):
                pass
    with advisory_lock(other_host):  # released when the first ingest ended
        pass
    engine.dispose()
    other_host.dispose()


def test_a_killed_ingest_leaves_no_lock_behind(postgres):
    url = postgres()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from assistant.database import advisory_lock, open_database\n"
            f"with advisory_lock(open_database({url!r})):\n"
            "    print('held', flush=True); time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        engine = open_database(url)
        with pytest.raises(IngestLocked):
            with advisory_lock(engine):
                pass
    finally:
        holder.kill()
        holder.wait()
    # The server drops the dead process's lock with its connection, as soon as it sees the socket close.
    deadline = time.monotonic() + 30
    while True:
        try:
            with advisory_lock(engine):
                break
        except IngestLocked:
            assert time.monotonic() < deadline, "the killed process's lock was never released"
            time.sleep(0.1)
    engine.dispose()


def test_server_mode_shares_lock_and_ledger_across_hosts(postgres, chroma_server, corpus_copy, tmp_path, embedder):
    """Two maintainer hosts (two index folders) ingesting into one Chroma server and one database."""
    url = postgres()
    (corpus_copy / "heat.md").write_text("# Heat packs\n\n## Using heat\n\nA warm heat pack can ease stiff muscles.\n")

    def host(name: str):
        settings = load_settings(
            corpus_dir=corpus_copy, index_dir=tmp_path / name, chroma_url=chroma_server, database_url=url
        )
        return settings, Coordination.from_settings(settings)

    first_settings, first = host("host-a")
    assert first.description == "the database server"
    report = build_index(corpus_copy, first_settings.index_dir, embedder, chroma_server, coordination=first)
    assert report.published and report.articles_read == 2
    assert not (first_settings.index_dir / "ledgers").exists()  # the ledger went to the database

    (corpus_copy / "heat.md").write_text("# Heat packs\n\n## Using heat\n\nA warm heat pack eases stiff muscles.\n")
    second_settings, second = host("host-b")
    with first.lock(), pytest.raises(IngestLocked):  # one ingest at a time, whichever host runs it
        build_index(corpus_copy, second_settings.index_dir, embedder, chroma_server, coordination=second)
    report = build_index(corpus_copy, second_settings.index_dir, embedder, chroma_server, coordination=second)
    # Host B never ingested, yet re-read only the file that changed: it found host A's ledger.
    assert report.published and report.articles_read == 1
    assert open_store(tmp_path / "any", chroma_server).active().version == report.version


def test_without_a_database_ingest_keeps_its_files(corpus_copy, tmp_path, embedder):
    settings = load_settings(corpus_dir=CORPUS, index_dir=tmp_path / "index")
    coordination = Coordination.from_settings(settings)
    assert coordination.description == "files beside the index"
    build_index(corpus_copy, settings.index_dir, embedder, coordination=coordination)
    assert list((settings.index_dir / "ledgers").glob("v*.json"))
