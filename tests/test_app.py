"""The chat end to end through gradio_client against a launched app."""

from __future__ import annotations

import pytest
from conftest import free_port
from gradio_client import Client

from assistant.edges.feedback import FeedbackStore
from assistant.edges.ui import build_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(assistant, settings, tmp_path_factory):
    app = build_app(assistant, settings, FeedbackStore(tmp_path_factory.mktemp("fb") / "feedback.sqlite3"))
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    app.close()


def test_ask_endpoint_returns_the_json_contract(client):
    reply = client.predict("What are the side effects of dry needling?", api_name="/ask")
    assert reply["status"] == "answered"
    assert reply["sources"][0]["section"].endswith("Potential Side Effects")
    assert reply["answer"].rstrip().endswith("back pain.*")


def test_chat_streams_answer_then_sources_then_safety_text(client):
    job = client.submit("Is dry needling safe?", [], api_name="/chat")
    updates = list(job)
    _box, chat = job.result()
    assert len(updates) >= 3, "the reply should arrive in steps"
    user, answer, sources, safety = chat
    assert user["role"] == "user" and answer["role"] == "assistant"
    text = answer["content"][0]["text"] if isinstance(answer["content"], list) else answer["content"]
    assert "\u201c" in text
    text = sources["content"][0]["text"] if isinstance(sources["content"], list) else sources["content"]
    assert text.startswith('<details class="sources"><summary>Sources (')
    text = safety["content"][0]["text"] if isinstance(safety["content"], list) else safety["content"]
    assert "When to Seek Professional Help" in text and text.rstrip().endswith("back pain.*\n\n</div>")


def test_chat_shows_patient_html_as_text(client):
    _box, chat = client.predict("<script>alert(1)</script>", [], api_name="/chat")
    user = chat[0]["content"]
    user = user[0]["text"] if isinstance(user, list) else user
    assert "<" not in user.replace("\\<", "") and "\\<script\\>" in user
