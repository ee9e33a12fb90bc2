"""Reading and chunking articles, and the words lexical scoring sees: no model, no store."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.articles.chunking import Chunker
from assistant.articles.corpus import load_corpus, parse_article
from assistant.articles.lexical import count_terms, mentions
from assistant.errors import CorpusError

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "corpus"

ARTICLE = "# Taping\n\nIntro line.\n\n## What is taping?\n\nTape is elastic.\n\n## Risks\n\n### Skin\n\nIt can itch.\n"


def write(tmp_path, text: str, name: str = "taping.md"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return parse_article(path, tmp_path)


def test_an_article_is_cut_by_section_with_the_heading_path(tmp_path):
    chunks = Chunker(1000, 0).split(write(tmp_path, ARTICLE))
    assert [c.section for c in chunks] == ["Introduction", "What is taping?", "Risks > Skin"]
    assert [c.text for c in chunks][1:] == ["Tape is elastic.", "It can itch."]
    assert {c.article for c in chunks} == {"Taping"}


def test_chunk_ids_depend_only_on_the_content(tmp_path):
    chunker = Chunker(1000, 0)
    first = [c.chunk_id for c in chunker.split(write(tmp_path, ARTICLE))]
    again = [c.chunk_id for c in chunker.split(write(tmp_path, ARTICLE))]
    edited = [c.chunk_id for c in chunker.split(write(tmp_path, ARTICLE.replace("It can itch.", "It may itch.")))]
    assert first == again
    assert edited[:2] == first[:2] and edited[2] != first[2]


def test_the_same_passage_twice_in_a_section_gets_two_ids(tmp_path):
    chunks = Chunker(20, 0).split(write(tmp_path, "# T\n\n## S\n\nSame words here.\n\nSame words here.\n"))
    assert len(chunks) == 2 and len({c.chunk_id for c in chunks}) == 2


def test_an_article_without_headings_is_refused_naming_the_fix(tmp_path):
    with pytest.raises(CorpusError, match="no Markdown headings"):
        write(tmp_path, "just some text\n")


def test_the_projects_corpus_reads_and_every_article_has_a_title():
    articles = load_corpus(CORPUS)
    assert articles and all(a.title for a in articles)


def test_mentions_compares_stem_by_stem():
    assert mentions("Is dry-needling safe?", ["dry needling"])
    assert mentions("where are my trigger points?", ["trigger point"])
    assert not mentions("acupuncture only", ["dry needling"])


def test_count_terms_counts_each_text_once():
    counts = count_terms(["needle needle pain", "needle"])
    assert sorted(counts.values()) == [1, 2]
