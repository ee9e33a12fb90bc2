"""The load script runs end to end with real gradio_client sessions: against its own app, and against a
running app with a tiny queue, where clients past the queue must be told "busy" instead of hanging.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

from assistant.config import load_settings
from assistant.edges.ui import build_app
from assistant.embeddings import Embedder
from assistant.wiring import build, reindex

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "load.py"

pytestmark = pytest.mark.slow


def run_load(*flags: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False", GRADIO_ANALYTICS_ENABLED="False"
    )
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", *flags], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_four_clients_for_five_seconds_get_only_full_answers():
    summary = run_load("--clients", "4", "--seconds", "5")
    assert summary["errors"] == 0, summary["messages"]
    assert summary["timeouts"] == 0, summary["messages"]
    assert summary["busy"] == 0, summary["messages"]
    assert summary["ok"] >= 4
    assert summary["ok_ms"]["p99"] is not None


@pytest.fixture(scope="module")
def tiny_queue_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The chat with one worker and room for two waiting requests, on a free loopback port."""
    tmp = tmp_path_factory.mktemp("load")
    settings = load_settings(
        corpus_dir=ROOT / "corpus", index_dir=tmp / "index", chroma_url=None, concurrency_limit=1, queue_max_size=2
    )
    embedder = Embedder(settings.embed_model)
    reindex(settings, embedder=embedder)
    assistant = build(settings, embedder=embedder)
    app = build_app(assistant, settings)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def test_past_the_queue_size_clients_are_told_busy_instead_of_hanging(tiny_queue_url):
    summary = run_load("--url", tiny_queue_url, "--clients", "8", "--seconds", "4")
    assert summary["errors"] == 0, summary["messages"]
    assert summary["timeouts"] == 0, summary["messages"]
    assert summary["busy"] > 0 and summary["ok"] > 0, summary
    assert any("Please try again" in message for message in summary["messages"]), summary["messages"]
