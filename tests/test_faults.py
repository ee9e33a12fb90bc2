"""Faults while the chat is running: every one gives the patient a calm "temporarily unavailable" reply
that still ends with the safety text, is logged, shows no traceback, and recovers once the cause is fixed.

The app is launched for real and asked through its ``/ask`` API (the JSON contract), so the edge that
turns failures into replies is part of what is tested. After a deleted index, ``python ingest.py`` runs
in its own process, as an operator would: an index rebuilt under the same folder name by another process
is exactly what a running app has to notice. Other repairs call the same CLI entry point in-process.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import free_port

from assistant.answering.compose import SAFETY_RULE, safety_text
from assistant.answering.service import Assistant
from assistant.articles.corpus import default_safety, load_corpus
from assistant.config import Settings, load_settings
from assistant.edges.cli import main as cli_main
from assistant.edges.feedback import FeedbackStore
from assistant.edges.ui import build_app
from assistant.embeddings import Embedder
from assistant.errors import IndexMissing, ModelUnavailable, StoreUnavailable
from assistant.wiring import build, reindex

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
CHROMA_COMMAND = Path(sys.executable).with_name("chroma")
QUESTION = "What are the side effects of dry needling?"
NEW_QUESTION = "What is kinesiology taping?"
NEW_ARTICLE = """# Kinesiology Taping

## What is kinesiology taping?

Kinesiology taping uses stretchy elastic cotton tape applied to the skin over sore back muscles to support them during movement.
"""

pytestmark = pytest.mark.slow


# -- helpers ------------------------------------------------------------------------------------


def expected_safety(corpus_dir: Path) -> str:
    return SAFETY_RULE + safety_text(default_safety(load_corpus(corpus_dir))[1])


def assert_unavailable(result: dict, settings: Settings) -> None:
    """The patient's view of a fault: calm words, status "unavailable", the safety text last, no internals."""
    answer = result["answer"]
    assert result["status"] == "unavailable", result
    assert "temporarily unavailable" in answer, answer
    assert answer.endswith(expected_safety(settings.corpus_dir)), answer
    for internal in ("Traceback", "Error", "chroma", "sqlite", str(settings.index_dir), "ingest.py"):
        assert internal not in answer, f"{internal!r} leaked into the reply: {answer}"
    assert result["sources"] == []


def assert_answered(result: dict, settings: Settings) -> None:
    assert result["status"] == "answered", result
    assert result["sources"], result
    assert result["answer"].endswith(expected_safety(settings.corpus_dir))


def errors_logged(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("assistant") and all(w in r.getMessage() for w in words)
    ]


def ingest_in_process(settings: Settings, embedder: Embedder) -> None:
    report = reindex(settings, embedder=embedder)
    assert report.published, report.message


def ingest_command(settings: Settings, *flags: str) -> subprocess.CompletedProcess[str]:
    """``python ingest.py`` in its own process, the way an operator repairs the index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(
        ASSISTANT_INDEX_DIR=str(settings.index_dir),
        ASSISTANT_CORPUS_DIR=str(settings.corpus_dir),
        ASSISTANT_EMBED_MODEL=settings.embed_model,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        ANONYMIZED_TELEMETRY="False",
    )
    return subprocess.run(
        [sys.executable, str(ROOT / "ingest.py"), "--quiet", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@contextmanager
def serving(assistant: Assistant, settings: Settings, tmp_path: Path) -> Iterator:
    """The real Gradio app on a free loopback port, and a client of its API."""
    from gradio_client import Client

    app = build_app(assistant, settings, FeedbackStore(tmp_path / "feedback.sqlite3"))
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        yield lambda question: client.predict(question, api_name="/ask")
    finally:
        app.close()


@pytest.fixture(scope="module")
def model() -> Embedder:
    model = Embedder(load_settings().embed_model)
    model.encode_one("warm up")
    return model


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A copy of the corpus, so a test can add an article before it re-ingests."""
    copy = tmp_path / "corpus"
    shutil.copytree(CORPUS, copy)
    return copy


@pytest.fixture
def config(tmp_path: Path, corpus: Path) -> Settings:
    """Settings for a fresh local index of the corpus copy."""
    return load_settings(corpus_dir=corpus, index_dir=tmp_path / "index", chroma_url=None)


def start_assistant(settings: Settings, embedder: Embedder) -> Assistant:
    assistant = build(settings, embedder=embedder)
    return assistant


# -- local index ------------------------------------------------------------------------------------


def test_deleted_index_while_running_replies_unavailable_then_serves_the_rebuilt_index(config, model, tmp_path, caplog):
    ingest_in_process(config, model)
    assistant = start_assistant(config, model)
    with serving(assistant, config, tmp_path) as ask:
        assert_answered(ask(QUESTION), config)
        assert ask(NEW_QUESTION)["status"] == "not_covered"  # the article added below is not in the index yet

        shutil.rmtree(config.index_dir)
        with caplog.at_level(logging.ERROR):
            assert_unavailable(ask(QUESTION), config)
        assert errors_logged(caplog, "no index")

        (config.corpus_dir / "kinesiology-taping.md").write_text(NEW_ARTICLE, encoding="utf-8")
        rebuilt = ingest_command(config)
        assert rebuilt.returncode == 0, rebuilt.stderr

        assert_answered(ask(QUESTION), config)
        # The rebuilt folder has the old name (v000001): the app must read the new files, not the deleted ones.
        taping = ask(NEW_QUESTION)
        assert taping["status"] == "answered", taping
        assert taping["sources"][0]["article"] == "Kinesiology Taping"


@pytest.mark.parametrize("search", ["chroma", "memory"])
def test_corrupt_index_files_reply_unavailable_and_the_advised_reingest_repairs_them(
    config, model, tmp_path, caplog, capsys, monkeypatch, search
):
    if search == "chroma":  # as for an index too large to be held in memory
        config = config.model_copy(update={"in_memory_chunks": 0})
    ingest_in_process(config, model)
    assistant = start_assistant(config, model)
    with serving(assistant, config, tmp_path) as ask:
        assert_answered(ask(QUESTION), config)
        active = config.index_dir / "v000001" / "chroma.sqlite3"
        with open(active, "r+b") as handle:  # in place, as a disk fault or a bad copy would
            handle.write(b"\x00garbage\xff" * 4096)

        if search == "chroma":
            with caplog.at_level(logging.ERROR):
                assert_unavailable(ask(QUESTION), config)
                assert_unavailable(ask(QUESTION), config)  # stays calm, does not half-work
            assert errors_logged(caplog, "unavailable")
        else:  # the published version, loaded and checked before the damage, goes on answering whole
            for _ in range(2):
                result = ask(QUESTION)
                assert_answered(result, config)
                assert result["index_version"] == 1

        # A restart refuses to start on the damaged index, and says how to repair it.
        with pytest.raises(StoreUnavailable) as refused:
            start_assistant(config, model)
        assert "python ingest.py --full" in str(refused.value)

        # The operator runs the command the error names, the way ingest.py runs it; that must repair the index.
        monkeypatch.setenv("ASSISTANT_CORPUS_DIR", str(config.corpus_dir))
        monkeypatch.setenv("ASSISTANT_INDEX_DIR", str(config.index_dir))
        capsys.readouterr()
        if cli_main(["--quiet"], prog_ingest=True) != 0:
            said = capsys.readouterr().err
            assert said.startswith("error:") and "python ingest.py --full" in said, said
            assert "Traceback" not in said, said
            assert cli_main(["--quiet", "--full"], prog_ingest=True) == 0, capsys.readouterr().err
        assert_answered(ask(QUESTION), config)  # the running app follows the repaired index
    with serving(start_assistant(config, model), config, tmp_path) as ask:
        assert_answered(ask(QUESTION), config)  # and a restart starts again


def test_missing_index_stops_start_up_naming_the_fix_and_ingest_repairs_it(config, model, tmp_path):
    with pytest.raises(IndexMissing) as refused:
        start_assistant(config, model)
    assert "python ingest.py" in str(refused.value)
    ingest_in_process(config, model)
    with serving(start_assistant(config, model), config, tmp_path) as ask:
        assert_answered(ask(QUESTION), config)


def test_red_flag_still_escalates_while_the_index_is_gone(config, model):
    ingest_in_process(config, model)
    assistant = start_assistant(config, model)
    shutil.rmtree(config.index_dir)
    reply = assistant.ask("I suddenly can't control my bladder and my legs feel numb")
    assert reply.status == "urgent"
    assert reply.answer.startswith("**\u26a0\ufe0f Possible cauda equina syndrome")
    assert "temporarily unavailable" in reply.answer
    assert reply.answer.endswith(expected_safety(config.corpus_dir))


# -- embedding model --------------------------------------------------------------------------------


def test_missing_embedding_model_stops_start_up_naming_the_setting(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-model"
    monkeypatch.setenv("ASSISTANT_EMBED_MODEL", str(missing))
    config = load_settings(corpus_dir=CORPUS, index_dir=tmp_path / "index")
    with pytest.raises(ModelUnavailable) as raised:
        build(config)
    message = str(raised.value)
    assert "ASSISTANT_EMBED_MODEL" in message
    assert str(missing) in message


@pytest.mark.parametrize("cause", ["model", "index"])
def test_start_up_failure_exits_with_one_clear_line(cause, tmp_path, monkeypatch, capsys):
    missing_model = tmp_path / "no-such-model"
    if cause == "model":
        monkeypatch.setenv("ASSISTANT_EMBED_MODEL", str(missing_model))
    monkeypatch.setenv("ASSISTANT_CORPUS_DIR", str(CORPUS))
    monkeypatch.setenv("ASSISTANT_INDEX_DIR", str(tmp_path / "index"))  # never built
    exit_code: list[int] = []
    # ``python app.py`` is ``main(["serve", ...])``; run in a thread so a start-up that wrongly
    # succeeds (and would serve forever) fails the test instead of hanging it.
    serve = threading.Thread(
        target=lambda: exit_code.append(cli_main(["serve", "--host", "127.0.0.1", "--port", str(free_port())])),
        daemon=True,
    )
    serve.start()
    serve.join(timeout=60)
    assert exit_code, f"the app started serving without its {cause}"
    assert exit_code[0] != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    if cause == "model":
        assert "ASSISTANT_EMBED_MODEL" in lines[0] and str(missing_model) in lines[0], err
    else:
        assert "python ingest.py" in lines[0], err


# -- Chroma server ----------------------------------------------------------------------------------


class ChromaServer:
    """``chroma run`` on loopback, started and stopped by the test; restartable on the same port and data."""

    def __init__(self, path: Path, port: int, log: Path) -> None:
        self.path, self.port, self.log = path, port, log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(CHROMA_COMMAND), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"chroma run did not start: {self.log.read_text(errors='replace')[-2000:]}"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    if not CHROMA_COMMAND.exists():
        pytest.skip(f"no chroma command at {CHROMA_COMMAND}")
    server = ChromaServer(tmp_path / "chroma-data", free_port(), tmp_path / "chroma.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.server
def test_chroma_server_going_away_replies_unavailable_then_recovers_when_it_is_back(
    tmp_path, corpus, model, chroma, monkeypatch, caplog
):
    monkeypatch.setenv("ASSISTANT_CHROMA_URL", chroma.url)
    # Searched by the server, as an index too large to be held in memory is.
    monkeypatch.setenv("ASSISTANT_IN_MEMORY_CHUNKS", "0")
    config = load_settings(corpus_dir=corpus, index_dir=tmp_path / "index")
    assert config.chroma_url == chroma.url
    ingest_in_process(config, model)
    assistant = start_assistant(config, model)
    # Keep the open snapshot for a minute, so the first failure hits the search itself, not the
    # once-a-second pointer check that would otherwise notice the server is gone first.
    assistant.reader.recheck_seconds = 60.0
    with serving(assistant, config, tmp_path) as ask:
        assert_answered(ask(QUESTION), config)

        chroma.stop()
        with caplog.at_level(logging.ERROR):
            assert_unavailable(ask(QUESTION), config)  # the search fails
            assert_unavailable(ask(QUESTION), config)  # reopening fails
        assert errors_logged(caplog, "Chroma server")

        chroma.start()
        deadline = time.monotonic() + 10
        while (result := ask(QUESTION))["status"] != "answered" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert_answered(result, config)
