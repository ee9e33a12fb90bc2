"""The pure core, without a model or a store: ``make test-fast`` runs these in seconds.

Loading the embedding model here is a mistake: any attempt fails the test that made it."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_model(monkeypatch):
    from assistant import embeddings

    def refuse(*_args, **_kwargs):
        raise AssertionError("a unit test loaded the embedding model: move it out of tests/unit")

    monkeypatch.setattr(embeddings.Embedder, "__init__", refuse)
