"""The plain JSON API beside the chat, served as app.py serves it (``assistant.web.served_app``)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import schemathesis
from conftest import free_port
from gradio_client import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode

from assistant.edges.api import OPENAPI_PATH
from assistant.edges.feedback import FeedbackStore
from assistant.edges.web import running, served_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(assistant, settings, tmp_path_factory):
    feedback = FeedbackStore(tmp_path_factory.mktemp("fb") / "feedback.sqlite3")
    with running(served_app(assistant, settings, feedback), "127.0.0.1", free_port()) as url:
        yield url


@pytest.fixture(scope="module")
def http(served):
    with httpx.Client(base_url=served, timeout=60) as client:
        yield client


def test_ask_returns_the_ask_json_contract(http, assistant):
    question = "What are the side effects of dry needling?"
    response = http.post("/api/v1/ask", json={"question": question})
    assert response.status_code == 200
    assert response.json() == assistant.ask(question).to_dict()  # what `ask --json` prints
    assert response.json()["quotes"] and response.json()["status"] == "answered"


def test_ask_reads_a_follow_up_with_its_history(http, assistant):
    body = {"question": "does it hurt?", "history": ["What is dry needling?"]}
    reply = http.post("/api/v1/ask", json=body).json()
    assert reply == assistant.ask(body["question"], body["history"]).to_dict()
    assert reply != assistant.ask(body["question"]).to_dict()  # the history was used


def test_ask_caps_the_echo_of_a_long_message(http, settings):
    reply = http.post("/api/v1/ask", json={"question": "pain " * 2000}).json()
    assert reply["status"] == "rejected"
    assert len(reply["question"]) == settings.max_question_chars


def test_health_names_the_index_model_and_reviewed_articles(http, assistant):
    health = http.get("/api/v1/health").json()
    manifest = assistant.reader.snapshot().manifest
    assert health["index_version"] == manifest.version
    assert health["model"] == manifest.model
    primary = next(a for a in health["articles"] if a["source"] == manifest.default_source)
    assert primary["reviewed"] == "2026-11-24"
    assert primary["title"] == manifest.title_of(manifest.default_source)


def test_openapi_schema_is_served_with_both_routes(http):
    schema = http.get(OPENAPI_PATH).json()
    assert {"/api/v1/ask", "/api/v1/health"} <= set(schema["paths"])
    assert set(schema["paths"]) <= {"/api/v1/ask", "/api/v1/health"}  # no Gradio route leaks into it
    assert {"401", "413", "422", "429"} <= set(schema["paths"]["/api/v1/ask"]["post"]["responses"])


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"question": 5}', b"{}", b'{"question": "hi", "history": "not a list"}', b"[]"],
)
def test_bad_bodies_get_json_errors(http, body):
    response = http.post("/api/v1/ask", content=body, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422)
    assert response.headers["content-type"].startswith("application/json")
    assert "detail" in response.json()


def test_a_body_over_the_limit_gets_a_json_413(http, settings):
    body = b'{"question": "' + b"a" * settings.max_body_bytes + b'"}'
    response = http.post("/api/v1/ask", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"].startswith("Request too large")


def test_api_is_closed_to_other_origins_by_default(http):
    preflight = {"origin": "https://elsewhere.example", "access-control-request-method": "POST"}
    response = http.options("/api/v1/ask", headers=preflight)
    assert "access-control-allow-origin" not in response.headers


def test_configured_origin_and_keys(assistant, settings, tmp_path):
    configured = settings.model_copy(update={"api_keys": "key-one, key-two", "cors_origins": "https://clinic.example"})
    with (
        running(served_app(assistant, configured, None), "127.0.0.1", free_port()) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        body = {"question": "What is dry needling?"}
        refused = http.post("/api/v1/ask", json=body)
        assert refused.status_code == 401 and refused.json()["detail"]
        assert http.post("/api/v1/ask", json=body, headers={"x-api-key": "key-three"}).status_code == 401
        assert http.post("/api/v1/ask", json=body, headers={"x-api-key": "key-two"}).status_code == 200
        assert http.post("/api/v1/ask", json=body, headers={"authorization": "Bearer key-one"}).status_code == 200
        assert http.get("/api/v1/health").status_code == 200  # load balancers check it without a key
        preflight = {"origin": "https://clinic.example", "access-control-request-method": "POST"}
        allowed = http.options("/api/v1/ask", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://clinic.example"
        assert "access-control-allow-credentials" not in allowed.headers


class Gated:
    """The real assistant, but every answer waits at a gate and is counted while inside."""

    def __init__(self, real) -> None:
        self.real = real
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.inside = 0
        self.most = 0

    def ask(self, question, history=()):
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        try:
            self.gate.wait(30)
            return self.real.ask(question, history)
        finally:
            with self.lock:
                self.inside -= 1

    def __getattr__(self, name):
        return getattr(self.real, name)


def wait_until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


def test_api_and_chat_share_one_answer_budget_and_a_full_queue_is_429(assistant, settings):
    gated = Gated(assistant)
    tight = settings.model_copy(update={"concurrency_limit": 1, "queue_max_size": 1})
    app = served_app(gated, tight, None)
    budget = app.state.answer_budget
    results: dict[str, object] = {}
    with running(app, "127.0.0.1", free_port()) as url, httpx.Client(base_url=url, timeout=60) as http:

        def by_api() -> None:
            results["api"] = http.post("/api/v1/ask", json={"question": "What is dry needling?"})

        def by_chat() -> None:
            results["chat"] = Client(url, verbose=False).predict(
                "What are the side effects of dry needling?", api_name="/ask"
            )

        first = threading.Thread(target=by_api)
        first.start()
        wait_until(lambda: gated.inside == 1, "the API request is answering")
        second = threading.Thread(target=by_chat)
        second.start()
        wait_until(lambda: budget.waiting == 1, "the chat's request waits for the API's slot")
        assert gated.inside == 1  # the chat did not start a second answer beside the API's
        busy = http.post("/api/v1/ask", json={"question": "Is it safe?"})
        assert busy.status_code == 429
        assert int(busy.headers["retry-after"]) > 0 and busy.json()["detail"]
        gated.gate.set()
        first.join(60)
        second.join(60)
    assert results["api"].status_code == 200 and results["api"].json()["status"] == "answered"
    assert results["chat"]["status"] == "answered"
    assert gated.most == 1


def test_chat_requests_waiting_in_gradios_queue_fill_the_apis_queue_too(assistant, settings):
    gated = Gated(assistant)
    tight = settings.model_copy(update={"concurrency_limit": 1, "queue_max_size": 1})
    app = served_app(gated, tight, None)
    chats: list[object] = []
    with running(app, "127.0.0.1", free_port()) as url, httpx.Client(base_url=url, timeout=60) as http:

        def by_chat() -> None:
            chats.append(
                Client(url, verbose=False).predict("What are the side effects of dry needling?", api_name="/ask")
            )

        threads = [threading.Thread(target=by_chat) for _ in range(2)]
        threads[0].start()
        wait_until(lambda: gated.inside == 1, "the first chat request is answering")
        threads[1].start()
        wait_until(lambda: app.state.chat_queue_length() == 1, "the second waits in Gradio's queue")
        assert app.state.answer_budget.waiting == 0  # nothing waits for the budget itself
        busy = http.post("/api/v1/ask", json={"question": "Is it safe?"})
        assert busy.status_code == 429 and "retry-after" in busy.headers
        gated.gate.set()
        for thread in threads:
            thread.join(60)
    assert [reply["status"] for reply in chats] == ["answered", "answered"]


# Strategies driven directly: schemathesis's lazy pytest fixture reads a pytest attribute that pytest 9 removed.
def schemathesis_run(url: str, mode: GenerationMode) -> list[int]:
    """Generated requests against the schema served at ``url``; every response checked. Returns the statuses."""
    schema = schemathesis.openapi.from_url(url.rstrip("/") + OPENAPI_PATH)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} == {("POST", "/api/v1/ask"), ("GET", "/api/v1/health")}
    calls: list[int] = []

    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # /health takes nothing, so nothing can be made invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def conforms(case) -> None:
            response = case.call_and_validate()
            calls.append(response.status_code)

        conforms()
    return calls


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_schema(served, mode):
    """Generated requests, valid and not: no server error, and every response matches the served schema."""
    calls = schemathesis_run(served, mode)
    assert calls and all(status < 500 for status in calls)


def test_api_with_keys_conforms_to_its_schema_and_refuses_without_one(assistant, settings):
    """With ASSISTANT_API_KEYS the schema declares the keys, and schemathesis's own auth checks hold."""
    keyed = settings.model_copy(update={"api_keys": "the-only-key"})
    with running(served_app(assistant, keyed, None), "127.0.0.1", free_port()) as url:
        calls = schemathesis_run(url, GenerationMode.POSITIVE)
    assert 401 in calls and all(status < 500 for status in calls)
