"""The app's database, behind SQLAlchemy: one SQLite file by default, PostgreSQL when configured.

It holds patient ratings and comments (``feedback``) and, on a database server, what several hosts
must share: the ledgers of index versions (``ledgers``) and the ingest writer lock (a PostgreSQL
advisory lock, held by the ingest's own connection). The schema is versioned by our own
``schema_version`` table; ``open_database`` applies what is missing at start, one host at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
)

from .config import Settings
from .errors import IngestLocked, StoreUnavailable

metadata = MetaData()

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reply_id", Text, nullable=False, unique=True),
    Column("created_at", Text, nullable=False),  # ISO 8601, UTC: sorts as text
    Column("rating", Text, CheckConstraint("rating IN ('up', 'down')"), nullable=False),
    Column("comment", Text, nullable=False, server_default=""),
    Column("question", Text, nullable=False),
    Column("answer", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("sources", Text, nullable=False),
    Column("index_version", Integer),
    sqlite_autoincrement=True,  # as the table was first created, without SQLAlchemy
)

ledgers = Table(
    "ledgers",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("body", Text, nullable=False),  # Ledger.to_json()
)

# The staff review queue (assistant/edges/reviewlog.py).
review = Table(
    "review",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", Text, nullable=False),  # ISO 8601, UTC: sorts as text
    Column("question", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("candidates", Text, nullable=False),  # JSON: [{section, article, text, score}]
    Column("index_version", Integer),
    Column("resolution", Text, nullable=False, server_default=""),  # what staff did; "" while open
)
schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))


def _v1(db: Connection) -> None:
    # A feedback file from before versioning already has this table: create only what is missing.
    feedback.create(db, checkfirst=True)


def _v2(db: Connection) -> None:
    ledgers.create(db, checkfirst=True)


def _v3(db: Connection) -> None:
    review.create(db, checkfirst=True)


# Append only: a change to the schema is a new step, never an edit of an old one.
MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)
# pg_advisory_lock keys: a fixed number per purpose, the same on every host.
MIGRATION_LOCK = 0x61737369_00000001  # "assi" …
INGEST_LOCK = 0x61737369_00000002


def database_url(settings: Settings) -> str:
    """ASSISTANT_DATABASE_URL, or the SQLite file ASSISTANT_FEEDBACK_DB."""
    return settings.database_url or f"sqlite:///{settings.feedback_db}"


def driver_url(url: str) -> str:
    """psycopg 3 is the driver installed; a plain postgresql:// URL would ask SQLAlchemy for psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_server(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def open_database(url: str) -> Engine:
    """An engine for ``url`` with the schema brought up to date."""
    url = driver_url(url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API objects
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

    else:
        engine = create_engine(url, pool_pre_ping=True)
    try:
        migrate(engine)
    except Exception as exc:
        engine.dispose()
        raise StoreUnavailable(f"cannot open the database {engine.url!r}: {exc}") from exc
    return engine


def current_version(db: Connection) -> int:
    if not engine_has_table(db, "schema_version"):
        return 0
    return int(db.execute(select(func.max(schema_version.c.version))).scalar() or 0)


def engine_has_table(db: Connection, name: str) -> bool:
    return db.dialect.has_table(db, name)


def migrate(engine: Engine) -> int:
    """Apply the steps the database lacks, in one transaction; returns the version it is at."""
    with engine.begin() as db:
        if is_server(engine):  # two replicas starting at once: the second waits, then finds nothing to do
            db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        schema_version.create(db, checkfirst=True)
        have = current_version(db)
        if have > SCHEMA_VERSION:
            raise RuntimeError(f"schema version {have} is newer than this code's {SCHEMA_VERSION}: update the app")
        for step in MIGRATIONS[have:]:
            step(db)
        if have < SCHEMA_VERSION:
            db.execute(schema_version.delete())
            db.execute(insert(schema_version).values(version=SCHEMA_VERSION))
        return SCHEMA_VERSION


@contextmanager
def advisory_lock(engine: Engine, key: int = INGEST_LOCK, what: str = "ingest") -> Iterator[None]:
    """Hold a PostgreSQL advisory lock for the block, or refuse at once if another session holds it.

    The lock belongs to this connection: if the process dies, the server drops the connection and
    the lock with it, so a killed ingest never leaves the lock behind.
    """
    with engine.connect() as db:
        got = db.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        db.commit()
        if not got:
            holder = db.execute(
                text(
                    "SELECT a.client_addr, a.application_name, a.backend_start FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
                    "AND l.objid = (:key & 4294967295) AND l.classid = (:key >> 32) AND l.granted LIMIT 1"
                ),
                {"key": key},
            ).first()
            who = f"a session since {holder.backend_start:%Y-%m-%d %H:%M:%S}" if holder else "another session"
            raise IngestLocked(
                f"another {what} is running ({who} holds the database lock); wait for it to finish, then run this again"
            )
        try:
            yield
        finally:
            db.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            db.commit()
