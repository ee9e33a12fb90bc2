"""Staff teach the assistant from a terminal: phrasings and not-covered examples, written to a copy
of corpus/, published by ingest; bad input is refused and changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, build_index, make_assistant, make_settings

from assistant.edges.teach import Teacher
from assistant.errors import TeachRefused

PHRASINGS = Path("phrasings/dry-needling-for-back-pain.yaml")
NOT_COVERED = Path("safety/not-covered.yaml")
# The article answers it (Infection Risk: hygiene), in words the ranking cannot match: refused
# (best sentence 0.34 when written, the threshold 0.60).
REFUSED = "is the kit kept spotless?"
INFECTION = "Risks and Considerations of Dry Needling > Infection Risk"


def snapshot(corpus: Path) -> dict[str, bytes]:
    return {str(p.relative_to(corpus)): p.read_bytes() for p in sorted(corpus.rglob("*")) if p.is_file()}


def added_lines(before: bytes, after: bytes) -> list[str]:
    """The lines ``after`` adds to ``before``, asserting nothing else changed (order and comments kept)."""
    old, new = before.decode().splitlines(), after.decode().splitlines()
    added, position = [], 0
    for line in new:
        if position < len(old) and line == old[position]:
            position += 1
        else:
            added.append(line)
    assert position == len(old), "a line of the original file was changed or removed"
    return added


@pytest.fixture
def teacher(corpus_copy, embedder):
    return Teacher.from_settings(make_settings(corpus_copy, corpus_copy.parent / "index"), embedder)


def test_attached_question_is_answered_from_that_section_after_ingest(
    assistant, teacher, corpus_copy, tmp_path, embedder
):
    assert assistant.ask(REFUSED).status == "not_covered"
    before = (corpus_copy / PHRASINGS).read_bytes()
    taught = teacher.attach(REFUSED, "Infection Risk")
    assert taught.path == corpus_copy / PHRASINGS
    assert added_lines(before, taught.path.read_bytes()) == [f"      - {REFUSED}"]
    build_index(corpus_copy, tmp_path / "index", embedder)
    after = make_assistant(make_settings(corpus_copy, tmp_path / "index"), embedder).ask(REFUSED)
    assert after.status == "answered"
    assert after.quotes[0].section == INFECTION and "risk of infection" in after.quotes[0].text


def test_not_covered_question_is_refused_after_ingest_and_names_who_to_ask(
    assistant, teacher, corpus_copy, tmp_path, embedder
):
    question = "can the needle spots go red and sore for a day?"
    assert assistant.ask(question).status == "answered"
    before = (corpus_copy / NOT_COVERED).read_bytes()
    taught = teacher.not_covered(question, ask="the clinic's nurse")
    added = added_lines(before, taught.path.read_bytes())
    assert added == [
        "  - id: ask-the-clinic-s-nurse",
        "    ask: the clinic's nurse",
        "    examples:",
        f"      - {question}",
    ]
    build_index(corpus_copy, tmp_path / "index", embedder)
    after = make_assistant(make_settings(corpus_copy, tmp_path / "index"), embedder).ask(question)
    assert after.status == "not_covered" and "Please ask the clinic's nurse." in after.answer


def test_not_covered_without_ask_joins_the_nearest_topic(teacher, corpus_copy):
    before = (corpus_copy / NOT_COVERED).read_bytes()
    taught = teacher.not_covered("can I sleep on my back after dry needling?")
    assert taught.detail["topic"] == "not-in-article"
    assert added_lines(before, taught.path.read_bytes()) == ["      - can I sleep on my back after dry needling?"]


def test_a_sentence_without_phrasings_gets_a_new_entry_with_a_unique_key(teacher, corpus_copy):
    before = (corpus_copy / PHRASINGS).read_bytes()
    text = before.decode()
    # Drop every entry of the Infection Risk sentences, so the file has none for that section.
    kept = [
        block for block in text.split("\n\n") if "skin penetration" not in block and "hygiene protocols" not in block
    ]
    (corpus_copy / PHRASINGS).write_text("\n\n".join(kept))
    trimmed = (corpus_copy / PHRASINGS).read_bytes()
    taught = teacher.attach(REFUSED, "Infection Risk")
    added = added_lines(trimmed, taught.path.read_bytes())
    assert added[1].startswith('  - key: "') and added[2:] == ["    questions:", f"      - {REFUSED}"]
    from assistant.articles.corpus import check_phrasings, load_corpus

    article = load_corpus(corpus_copy)[0]
    assert check_phrasings(article, corpus_copy / article.source) == []


@pytest.mark.parametrize(
    ("question", "section", "message"),
    [
        ("does it help?", "Nope", "no section 'Nope'; the sections are:\n"),
        ("   ", "Infection Risk", "the question is empty"),
        ("I feel like ending it all, will needling help?", "Pain Reduction", "red flag 'self-harm' (pattern"),
        (
            "the skin around my backside feels like cardboard, is that normal after dry needling?",
            "Potential Side Effects",
            "red flag 'cauda-equina' (similar to:",
        ),
        ("how much does dry needling cost?", "Pain Reduction", "not-covered topic 'cost'"),
        ("what is dry needling?", "Pain Reduction", "already a phrasing"),
    ],
)
def test_bad_attach_is_refused_with_the_reason_and_changes_nothing(teacher, corpus_copy, question, section, message):
    before = snapshot(corpus_copy)
    with pytest.raises(TeachRefused) as refused:
        teacher.attach(question, section)
    assert message in str(refused.value)
    if section == "Nope":
        assert "Risks and Considerations of Dry Needling > Infection Risk" in str(refused.value)
    assert snapshot(corpus_copy) == before


def test_red_flag_or_phrasing_is_not_marked_not_covered(teacher, corpus_copy):
    before = snapshot(corpus_copy)
    with pytest.raises(TeachRefused, match="red flag 'infection-fever'"):
        teacher.not_covered("I have a fever and chills since the needling")
    with pytest.raises(TeachRefused, match="is a phrasing of the sentence"):
        teacher.not_covered("What is dry needling?")
    assert snapshot(corpus_copy) == before


def run(args, corpus_dir, tmp_path):
    env = {
        **os.environ,
        "ASSISTANT_CORPUS_DIR": str(corpus_dir),
        "ASSISTANT_INDEX_DIR": str(tmp_path / "index"),
        "ASSISTANT_AUDIT_LOG": str(tmp_path / "audit.log"),
    }
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


def test_teach_command_attaches_and_records_who_and_when(corpus_copy, tmp_path):
    done = run(["teach", REFUSED, "--section", "Infection Risk", "--by", "alice"], corpus_copy, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"Attached {REFUSED!r}" in done.stdout and "python ingest.py" in done.stdout
    assert REFUSED in (corpus_copy / PHRASINGS).read_text()
    (entry,) = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert entry["who"] == "alice" and entry["action"] == "attach" and entry["section"] == INFECTION and entry["at"]
    published = subprocess.run(
        [sys.executable, "ingest.py", "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "ASSISTANT_CORPUS_DIR": str(corpus_copy), "ASSISTANT_INDEX_DIR": str(tmp_path / "index"),
             "ASSISTANT_AUDIT_LOG": str(tmp_path / "audit.log")},
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    last = json.loads((tmp_path / "audit.log").read_text().splitlines()[-1])
    assert last["action"] == "publish" and last["version"] == 1 and last["who"]
    asked = run(["ask", "--json", REFUSED], corpus_copy, tmp_path)
    first = json.loads(asked.stdout)["quotes"][0]
    assert first["section"] == INFECTION


def test_teach_command_error_is_one_line_and_changes_nothing(corpus_copy, tmp_path):
    before = snapshot(corpus_copy)
    done = run(["teach", "does it help?", "--section", "Nope"], corpus_copy, tmp_path)
    assert (
        done.returncode == 2 and done.stderr.startswith("error: no section 'Nope'") and "Traceback" not in done.stderr
    )
    both = run(["teach", "does it help?", "--section", "Pain Reduction", "--not-covered"], corpus_copy, tmp_path)
    assert both.returncode == 2 and "either --section" in both.stderr
    assert snapshot(corpus_copy) == before and not (tmp_path / "audit.log").exists()


def test_a_section_in_two_articles_needs_the_article_named(teacher, corpus_copy):
    (corpus_copy / "wound-care.md").write_text(
        "---\ntitle: Wound care\n---\n# Wound care\n\n## Infection Risk\n\n"
        "Keep the skin clean and dry for a day after any procedure that breaks it.\n"
    )
    with pytest.raises(TeachRefused, match="is in more than one article"):
        teacher.attach(REFUSED, "Infection Risk")
    taught = teacher.attach("how do I look after the skin afterwards?", "Infection Risk", article="Wound care")
    assert taught.path == corpus_copy / "phrasings" / "wound-care.yaml"
    from assistant.articles.corpus import check_phrasings, load_corpus

    article = next(a for a in load_corpus(corpus_copy) if a.source == "wound-care.md")
    assert article.phrasings == (
        ("Keep the skin clean and dry for a day", ("how do I look after the skin afterwards?",)),
    )
    assert check_phrasings(article, corpus_copy / article.source) == []
