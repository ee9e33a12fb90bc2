"""The chat under abuse: one app-wide answer budget, bounded requests, bounded storage, closed side doors.

Each test drives the app as production serves it (``assistant.web.web_app``: Gradio mounted behind
the HTTP edge rules, run by uvicorn on loopback) or the handler or store it is about.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gradio as gr
import pytest
from conftest import free_port
from gradio_client import Client

from assistant import embeddings
from assistant.edges.feedback import MAX_CELL, FeedbackStore
from assistant.edges.staff import StaffHandlers
from assistant.edges.ui import MAX_KEPT_MESSAGES, ChatHandlers, build_app
from assistant.edges.web import GRADIO_EVENTS_KEPT, prepare_serving_process, running, web_app

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"
LIMIT = 2  # answers computed at once in these tests


class Slowed:
    """The real assistant with a deliberate wait in ``ask``, counting how many answers run at once."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.delay = 0.0
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def ask(self, *args, **kwargs):
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(self.delay)
            return self.inner.ask(*args, **kwargs)
        finally:
            with self._lock:
                self.running -= 1

    def reset(self, delay: float) -> None:
        self.delay, self.peak = delay, 0


@contextmanager
def served(assistant, **overrides) -> Iterator[str]:
    settings = assistant.settings.model_copy(update={"concurrency_limit": LIMIT, **overrides})
    feedback = FeedbackStore(Path(tempfile.mkdtemp(prefix="abuse-")) / "feedback.sqlite3")
    with running(web_app(build_app(assistant, settings, feedback), settings), "127.0.0.1", free_port()) as url:
        yield url


@pytest.fixture(scope="module")
def slowed(assistant) -> Slowed:
    return Slowed(assistant)


@pytest.fixture(scope="module")
def staff_url(slowed) -> Iterator[str]:
    with served(slowed, staff_password=PASSWORD, queue_max_size=64) as url:
        yield url


@pytest.fixture(scope="module")
def public_url(assistant) -> Iterator[str]:
    with served(assistant, staff_password=None) as url:
        yield url


def http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None):
    """(status, headers, body) of one request; an HTTP error status is a result, not an exception."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def post_json(url: str, payload: object, headers: dict[str, str] | None = None):
    return http(url, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


# -- one budget -------------------------------------------------------------------------------------


def test_every_answering_route_shares_one_concurrency_limit(staff_url, slowed):
    """Eight slow requests over /ask, /chat and the staff console run at most LIMIT at a time."""
    slowed.reset(delay=0.6)
    calls = [
        lambda c: c.predict("What is dry needling?", api_name="/ask"),
        lambda c: c.predict("Does dry needling hurt?", [], api_name="/chat"),
        lambda c: c.predict(PASSWORD, "What is dry needling?", "", "", api_name="/staff_inspect"),
        lambda c: c.predict("Who should not have dry needling?", api_name="/ask"),
    ] * 2
    clients = [Client(staff_url, verbose=False) for _ in calls]
    try:
        with ThreadPoolExecutor(len(calls)) as pool:
            results = list(pool.map(lambda pair: pair[0](pair[1]), zip(calls, clients, strict=True)))
    finally:
        for client in clients:
            client.close()
        peak = slowed.peak
        slowed.reset(delay=0.0)
    assert len(results) == 8 and all(results)
    assert peak == LIMIT, f"{peak} answers ran at once; the limit is {LIMIT}"


@pytest.mark.parametrize("name", ["ask", "chat", "staff_inspect"])
def test_direct_run_routes_cannot_skip_the_queue(staff_url, slowed, name):
    slowed.reset(delay=0.0)
    data = {"ask": ["What is dry needling?"], "chat": ["What is dry needling?", []]}.get(
        name, [PASSWORD, "What is dry needling?", ""]
    )
    status, _, body = post_json(f"{staff_url}gradio_api/run/{name}", {"data": data})
    assert 400 <= status < 500, (status, body[:300])
    assert b"Traceback" not in body and b"When to Seek" not in body


# -- bounded cost per request ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["gradio_api/queue/join", "gradio_api/run/ask", "gradio_api/call/ask", ""])
def test_a_body_over_the_limit_is_refused_with_413_on_every_route(staff_url, route):
    huge = {"data": ["chest pain " * 100_000], "fn_index": 0, "session_hash": "abc"}  # about 1.1 MB
    status, _, body = post_json(staff_url + route, huge)
    assert status == 413, (status, body[:300])
    assert b"65,536 bytes" in body


def test_a_chunked_body_over_the_limit_is_refused_with_413(staff_url):
    def chunks():
        for _ in range(40):
            yield b"x" * 4096

    request = urllib.request.Request(
        staff_url + "gradio_api/call/ask", data=chunks(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413


def test_a_body_under_the_limit_is_answered(staff_url):
    client = Client(staff_url, verbose=False)
    try:
        reply = client.predict("What is dry needling? " + "please " * 5_000, api_name="/ask")  # 37 kB
    finally:
        client.close()
    assert reply["status"] == "rejected"
    assert reply["answer"].rstrip().endswith("back pain.*")


def test_ask_echoes_at_most_max_question_chars(staff_url, assistant):
    client = Client(staff_url, verbose=False)
    try:
        reply = client.predict("I have chest pain after needling. " + "a" * 20_000, api_name="/ask")
    finally:
        client.close()
    assert len(reply["question"]) == assistant.settings.max_question_chars
    assert reply["status"] == "urgent"  # refused for its length, still triaged


# -- bounded storage ----------------------------------------------------------------------------------


def record(reply_id: str, question: str) -> dict:
    return {"reply_id": reply_id, "question": question, "answer": "A" * 1_000_000, "status": "answered", "sources": []}


def test_stored_feedback_is_capped(tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    store.rate("r1", record("r1", "Q" * 1_000_000), liked=True, comment="C" * 1_000_000)
    store.comment("r1", "D" * 1_000_000)
    size = (tmp_path / "fb.sqlite3").stat().st_size + (tmp_path / "fb.sqlite3-wal").stat().st_size
    ((_, _, comment, question, answer, *_),) = store.rows()
    assert len(question) <= 2000 and len(answer) <= 8000 and len(comment) <= 1000
    assert size < 200_000


def test_csv_cells_fit_a_spreadsheet_cell(tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    store.rate("r1", record("r1", "q"), liked=True)
    with sqlite3.connect(tmp_path / "fb.sqlite3") as db:  # a row stored before the caps existed
        db.execute("UPDATE feedback SET question=?", ("=" + "Q" * 100_000,))
    import csv
    import io

    cells = [cell for row in csv.reader(io.StringIO(store.to_csv())) for cell in row]
    assert max(len(cell) for cell in cells) <= MAX_CELL < 32_767
    assert any(cell.startswith("'=QQQ") for cell in cells)


def test_ratings_older_than_the_retention_period_are_purged_at_start(tmp_path):
    path = tmp_path / "fb.sqlite3"
    store = FeedbackStore(path)
    store.rate("old", record("old", "old question"), liked=True)
    store.rate("new", record("new", "new question"), liked=True)
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat(timespec="seconds")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE feedback SET created_at=? WHERE reply_id='old'", (old,))
    assert len(FeedbackStore(path).rows()) == 2  # no retention set: kept
    assert [row[3] for row in FeedbackStore(path, retention_days=365).rows()] == ["new question"]


class Request:
    def __init__(self, session: str) -> None:
        self.session_hash = session


def test_ratings_are_rate_limited_per_session(tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    handlers = ChatHandlers(None, store, ratings_per_minute=3)  # type: ignore[arg-type]
    replies = {str(i): {**record(f"r{i}", f"q{i}"), "answer": "a"} for i in range(10)}
    said, last = [], None
    for i in range(6):
        like = gr.LikeData(None, {"index": i, "value": "", "liked": True})
        said.append(handlers.rate_and_remember(like, replies, last, Request("a")))
        last = said[-1][1]
    assert [message.startswith("Thank you") for message, _ in said] == [True] * 3 + [False] * 3
    assert "wait a moment" in said[-1][0] and said[-1][1] == "r2"  # a comment still goes to the last saved one
    other, _ = handlers.rate_and_remember(
        gr.LikeData(None, {"index": 7, "value": "", "liked": False}), replies, None, Request("b")
    )
    assert other.startswith("Thank you")
    assert len(store.rows()) == 4


def test_the_rating_limiter_remembers_a_bounded_number_of_sessions(tmp_path):
    handlers = ChatHandlers(None, FeedbackStore(tmp_path / "fb.sqlite3"), sessions=50)  # type: ignore[arg-type]
    replies = {"1": {**record("r1", "q"), "answer": "a"}}
    for n in range(500):
        handlers.rate_and_remember(
            gr.LikeData(None, {"index": 1, "liked": True, "value": ""}), replies, None, Request(str(n))
        )
    assert len(handlers._ratings) == 50


def test_exports_are_private_and_deleted_after_the_download_window(assistant, tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    store.rate("r1", record("r1", "q"), liked=True)
    settings = assistant.settings.model_copy(update={"staff_password": PASSWORD, "export_ttl_seconds": 1})
    export_dir = tmp_path / "exports"
    export_dir.mkdir(mode=0o700)
    staff = StaffHandlers(assistant, settings, store, export_dir)
    message, path = staff.export_feedback(PASSWORD)
    assert message == "Your CSV file is ready to download." and path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(Path(path).parent).st_mode) == 0o700
    for _ in range(50):
        if not Path(path).exists():
            break
        time.sleep(0.1)
    assert not Path(path).exists() and not Path(path).parent.exists()
    app = build_app(assistant, settings, store)
    assert app.delete_cache == (10, 1)  # Gradio's own copy for download is deleted as well


def test_the_exported_file_served_for_download_is_private(staff_url):
    client = Client(staff_url, verbose=False, download_files=False)
    try:
        _, served_file = client.predict(PASSWORD, "", api_name="/staff_export")
    finally:
        client.close()
    path = Path(served_file["path"])
    assert path.name.startswith("feedback-") and stat.S_IMODE(path.stat().st_mode) == 0o600


# -- closed side doors ----------------------------------------------------------------------------------


def multipart(name: str, content: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = "----abuse-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_patients_cannot_upload_files(public_url):
    body, headers = multipart("a.yaml", b"cases: []\n")
    status, _, _ = http(public_url + "gradio_api/upload", body, headers)
    assert status == 404


def test_staff_uploads_are_size_limited(staff_url):
    body, headers = multipart("set.yaml", b"cases: []\n")
    status, _, answer = http(staff_url + "gradio_api/upload", body, headers)
    assert status == 200 and json.loads(answer)[0].endswith("set.yaml")
    body, headers = multipart("big.yaml", b"#" * 2_000_000)
    status, _, _ = http(staff_url + "gradio_api/upload", body, headers)
    assert status == 413


def test_pages_carry_a_strict_content_security_policy(public_url):
    status, headers, _ = http(public_url)
    assert status == 200
    policy = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy and "object-src 'none'" in policy
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_frame_ancestors_is_configurable_for_a_clinic_site(assistant):
    with served(assistant, frame_ancestors="'self' https://clinic.example") as url:
        _, headers, _ = http(url)
    assert "frame-ancestors 'self' https://clinic.example" in headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in headers


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:9999", "https://evil.example"])
def test_no_credentialed_cors_by_default(public_url, origin):
    for method in ("GET", "OPTIONS"):
        headers = {"Origin": origin}
        if method == "OPTIONS":
            headers["Access-Control-Request-Method"] = "POST"
        _, answer, _ = http(public_url + "config", headers=headers, method=method)
        assert answer.get("Access-Control-Allow-Credentials") is None, method
        assert answer.get("Access-Control-Allow-Origin") in (None, ""), method


def test_a_configured_origin_may_call_the_api_without_credentials(assistant):
    with served(assistant, cors_origins="https://clinic.example") as url:
        _, answer, _ = http(url + "config", headers={"Origin": "https://clinic.example"})
    assert answer["Access-Control-Allow-Origin"] == "https://clinic.example"
    assert answer.get("Access-Control-Allow-Credentials") is None


def test_rating_without_event_data_gets_a_clean_4xx(staff_url):
    status, _, body = post_json(staff_url + "gradio_api/run/rate_and_remember", {"data": [None, None]})
    assert 400 <= status < 500, (status, body[:300])
    assert b"Traceback" not in body


def test_the_rating_handler_survives_missing_event_data(tmp_path):
    handlers = ChatHandlers(None, FeedbackStore(tmp_path / "fb.sqlite3"))  # type: ignore[arg-type]
    message, last = handlers.rate_and_remember(gr.EventData(None, None), {"1": record("r1", "q")}, "earlier")
    assert message == "That reply is no longer available to rate." and last == "earlier"


# -- per-session memory -----------------------------------------------------------------------------


def test_a_conversation_keeps_a_bounded_number_of_messages_and_ratings_still_point_at_them(assistant):
    handlers = ChatHandlers(assistant, None)
    conversation, replies = [], {}
    for n in range(50):
        replies[str(len(conversation) + 1)] = replies[str(len(conversation) + 2)] = {"reply_id": f"r{n}"}
        conversation += [
            {"role": "user", "content": f"question {n}"},
            {"role": "assistant", "content": f"answer {n}"},
            {"role": "assistant", "content": "safety"},
        ]
    _, showing, kept, kept_replies, _ = handlers.accept("What is dry needling?", conversation, replies)
    assert len(kept) <= MAX_KEPT_MESSAGES + 1 and kept[-1]["content"] == "What is dry needling?"
    assert kept[0]["role"] == "user" and kept[-2]["content"] == "safety"
    assert kept_replies and all(int(key) < len(kept) for key in kept_replies)
    for key, record in kept_replies.items():  # a rating still reaches the reply it was given on
        if kept[int(key)]["content"] != "safety":
            assert kept[int(key)]["content"] == f"answer {record['reply_id'][1:]}"


@pytest.fixture
def model_threads(monkeypatch) -> list[int]:
    """What the serving process would set torch's and BLAS's threads to (not set for the test run)."""
    asked: list[int] = []
    monkeypatch.setattr(embeddings, "limit_threads", asked.append)
    return asked


def test_the_served_app_runs_one_model_thread_and_keeps_a_bounded_number_of_event_records(
    assistant, monkeypatch, model_threads
):
    environ = {k: v for k, v in os.environ.items() if k not in ("GRADIO_ANALYTICS_MAX_EVENTS", "MALLOC_ARENA_MAX")}
    monkeypatch.setattr(os, "environ", environ)
    assert prepare_serving_process()  # glibc (Debian): the arena cap is set
    assert model_threads == [1]
    blocks = build_app(assistant, assistant.settings)
    assert blocks._queue.ANALYTICS_MAX_EVENTS == GRADIO_EVENTS_KEPT


def test_memory_settings_from_the_environment_win(assistant, monkeypatch, model_threads):
    environ = {**os.environ, "GRADIO_ANALYTICS_MAX_EVENTS": "50", "MALLOC_ARENA_MAX": "4"}
    monkeypatch.setattr(os, "environ", environ)
    assert not prepare_serving_process()  # glibc read MALLOC_ARENA_MAX itself at start
    assert build_app(assistant, assistant.settings)._queue.ANALYTICS_MAX_EVENTS == 50


def test_accepting_a_message_shows_it_with_urgent_advice_without_waiting_for_an_answer(assistant):
    class NeverAnswers(Slowed):
        def ask(self, *args, **kwargs):
            raise AssertionError("accept must not wait for an answer")

    handlers = ChatHandlers(NeverAnswers(assistant), None)  # type: ignore[arg-type]
    box, showing, conversation, _, pending = handlers.accept("I have chest pain after needling", [], {})
    assert box == "" and showing[0] == {"role": "user", "content": "I have chest pain after needling"}
    assert showing[1]["content"].startswith('<div class="urgent-banner tier-emergency" role="alert">')
    assert "**Chest pain or sudden breathlessness: please act now.**" in showing[1]["content"]
    assert conversation == showing[:1] and pending["message"] == "I have chest pain after needling"
    busy, _ = handlers.busy(pending, conversation)
    assert (
        busy[1]["content"].startswith(showing[1]["content"])
        and "Many people are asking right now" in busy[1]["content"]
    )
    assert busy[-1]["content"].rstrip().endswith("back pain.*\n\n</div>")
