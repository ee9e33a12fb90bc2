"""Searching the index: in memory (a small index, or a question scoped to an article) or through Chroma."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from conftest import ROOT

QUESTIONS = [case["question"] for case in yaml.safe_load((ROOT / "tests/data/in_scope.yaml").read_text())]


def test_small_index_is_searched_in_memory_with_chromas_results(assistant, embedder):
    snapshot = assistant.reader.snapshot()
    assert snapshot.manifest.chunks <= snapshot.in_memory_chunks
    large = dataclasses.replace(snapshot, in_memory_chunks=0)  # as an index too large for memory is searched
    for question in QUESTIONS:
        vector = embedder.encode_one(question)
        in_memory = snapshot.search(vector, 12)
        through_chroma = large.search(vector, 12)
        assert [h.chunk_id for h in in_memory] == [h.chunk_id for h in through_chroma], question
        assert [h.score for h in in_memory] == pytest.approx([h.score for h in through_chroma], abs=1e-5)
        assert in_memory[0].text and in_memory[0].section and in_memory[0].article


def test_scoped_search_returns_only_the_scope(assistant, embedder):
    snapshot = assistant.reader.snapshot()
    source = snapshot.manifest.default_source
    hits = snapshot.search(embedder.encode_one("What is dry needling?"), 50, [source])
    assert len(hits) == snapshot.manifest.chunks and {h.source for h in hits} == {source}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
