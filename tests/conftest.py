"""Shared fixtures: the real embedding model, a real Chroma index built from the project's corpus."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
SHARED = ROOT.parent / "shared"
# A staff set of two cases, for tests that publish through the gate but do not test it.
SMALL_GATE = """cases:
  - name: what-is-dry-needling
    question: What is dry needling?
    expect: answered
    section: What is Dry Needling?
  - name: cost-is-not-covered
    question: How much does dry needling cost?
    expect: not_covered
"""

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path):
    """No stray ASSISTANT_* setting from the shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("ASSISTANT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ASSISTANT_FEEDBACK_DB", str(tmp_path / "feedback.sqlite3"))
    # Staff accounts and the audit log of a developer's checkout never reach a test (nor the reverse).
    monkeypatch.setenv("ASSISTANT_STAFF_USERS", str(tmp_path / "staff-users.json"))
    monkeypatch.setenv("ASSISTANT_AUDIT_LOG", str(tmp_path / "audit.log"))


@pytest.fixture(autouse=True)
def _no_model_in_unit_tests(request, monkeypatch):
    """tests/unit is the pure core (``make test-fast``, seconds): loading the embedding model there fails."""
    if "unit" not in request.path.parent.parts[-1:]:
        return
    from assistant import embeddings

    def refuse(*_args, **_kwargs):
        raise AssertionError("a unit test loaded the embedding model: move it out of tests/unit")

    monkeypatch.setattr(embeddings.Embedder, "__init__", refuse)


@pytest.fixture(scope="session")
def embedder():
    from assistant.embeddings import Embedder

    model = Embedder()
    model.encode(["warm up"])
    return model


def build_index(corpus_dir: Path, index_dir: Path, embedder, chroma_url: str | None = None, **kwargs):
    """``python ingest.py`` of ``corpus_dir`` into ``index_dir``, with the one loaded model."""
    from assistant.wiring import reindex

    return reindex(make_settings(corpus_dir, index_dir, chroma_url=chroma_url), embedder=embedder, **kwargs)


def make_settings(corpus_dir: Path, index_dir: Path, **overrides):
    from assistant.config import load_settings

    return load_settings(corpus_dir=corpus_dir, index_dir=index_dir, **overrides)


def make_assistant(settings, embedder):
    from assistant.wiring import build

    return build(settings, embedder=embedder)


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory, embedder):
    path = tmp_path_factory.mktemp("index")
    build_index(CORPUS, path, embedder)
    return path


@pytest.fixture(scope="session")
def settings(index_dir):
    return make_settings(CORPUS, index_dir)


@pytest.fixture(scope="session")
def assistant(settings, embedder):
    return make_assistant(settings, embedder)


@pytest.fixture
def corpus_copy(tmp_path):
    """A writable copy of the project's corpus."""
    target = tmp_path / "corpus"
    shutil.copytree(CORPUS, target)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path):
    """A real `chroma run` on 127.0.0.1, stopped when the test ends."""
    chroma = Path(sys.executable).parent / "chroma"
    if not chroma.exists():
        pytest.skip("the chroma command (from the chromadb package) is not installed")
    port = free_port()
    log = open(tmp_path / "chroma.log", "w")
    proc = subprocess.Popen(
        [str(chroma), "run", "--path", str(tmp_path / "chroma-data"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    import urllib.request

    while True:
        try:
            urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"chroma run did not start: {(tmp_path / 'chroma.log').read_text()[-2000:]}")
            time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` user Debian's package made."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL (Debian's) on 127.0.0.1 in a temporary cluster; yields a function making a fresh database URL."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql)")
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="assistant-pg-"))  # under /tmp: pytest's own folders are root-only
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    initdb = [str(bin_dir / "initdb"), "-D", str(data / "cluster"), "-U", "assistant", "--auth=trust", "-E", "UTF8"]
    subprocess.run(_as_postgres_user([*initdb, "--no-instructions"]), check=True, capture_output=True)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={data} -c fsync=off"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data / "cluster"), "-l", str(data / "server.log")]
    subprocess.run(
        _as_postgres_user([*pg_ctl, "-o", options, "-w", "-t", "60", "start"]), check=True, capture_output=True
    )
    import psycopg

    made = iter(range(1, 1_000_000))

    def new_database() -> str:
        name = f"assistant_{next(made)}"
        with psycopg.connect(f"postgresql://assistant@127.0.0.1:{port}/postgres", autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return f"postgresql://assistant@127.0.0.1:{port}/{name}"

    try:
        yield new_database
    finally:
        subprocess.run(_as_postgres_user([*pg_ctl, "-m", "fast", "-w", "stop"]), capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
