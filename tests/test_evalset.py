"""Staff test sets: the YAML format, checking replies, reports, the eval command and the ingest gate."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from assistant.answering.compose import ANSWERED, NOT_COVERED, Reply, Source
from assistant.articles.store import open_store
from assistant.config import load_settings
from assistant.errors import EvalFileError
from assistant.evaluation.cases import Case, all_passed, load_cases
from assistant.evaluation.evalset import check, make_gate, run_eval
from assistant.evaluation.reports import html_report, markdown_report, table_text, write_report
from assistant.wiring import reindex

ROOT = Path(__file__).resolve().parent.parent
STAFF_SET = ROOT / "corpus" / "staff-set.yaml"
ARTICLE = "Dry Needling for Back Pain: Benefits and Risks"
INFECTION = "Risks and Considerations of Dry Needling > Infection Risk"


def write(tmp_path: Path, text: str, name: str = "set.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def reply(status: str = ANSWERED, answer: str = "", sections: tuple[str, ...] = (), article: str = ARTICLE) -> Reply:
    sources = [Source(article, section, f"c{n}", 0.9, "text") for n, section in enumerate(sections)]
    return Reply("q", status, answer, sources=sources, index_version=1)


# -- the file format ------------------------------------------------------------------------------


def test_project_set_loads_with_its_conversation_case():
    cases = {case.name: case for case in load_cases(STAFF_SET)}
    assert len(cases) >= 10
    follow_up = cases["follow-up-reads-the-earlier-question"]
    assert follow_up.history == ("What is dry needling?",)
    assert follow_up.question == "Does it help?"
    assert cases["infection-risk"].section == "Infection Risk"
    assert cases["empty-message-is-rejected"].question == ""


GOOD = """
  - name: good
    question: What is dry needling?
    expect: answered
"""

MALFORMED = {
    "misspelled status": (
        "expect: answerd",
        "'expect' must be one of answered, not_covered, urgent, rejected; found 'answerd'",
    ),
    "missing status": ("", "'expect' must be one of answered, not_covered, urgent, rejected; it is missing"),
    "misspelled key": ("expect: answered\n    must_includes: [x]", "unknown key(s) must_includes"),
    "phrases not a list": (
        "expect: answered\n    must_include: risk",
        "'must_include' must be a list of non-empty phrases",
    ),
    "empty phrase": (
        "expect: answered\n    must_not_include: ['']",
        "'must_not_include' must be a list of non-empty phrases",
    ),
    "section that cannot match": (
        "expect: not_covered\n    section: Infection Risk",
        "'section' can never match: a not_covered reply",
    ),
    "article that cannot match": ("expect: rejected\n    article: X", "'article' can never match: a rejected reply"),
    "empty section": ("expect: answered\n    section: ''", "'section' must be non-empty text"),
    "phrase wanted and unwanted": (
        "expect: answered\n    must_include: [Risk]\n    must_not_include: [risk]",
        "phrase(s) 'risk' are in both must_include and must_not_include",
    ),
}


@pytest.mark.parametrize("extra, message", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_entry_is_named_by_file_number_name_and_line(tmp_path, extra, message):
    path = write(tmp_path, f"cases:{GOOD}  - name: bad-one\n    question: Is it safe?\n    {extra}\n")
    with pytest.raises(EvalFileError) as raised:
        load_cases(path)
    assert str(raised.value).startswith(f"{path}: case 2 ('bad-one', line 5): {message}")


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            "- name: q-and-c\n    question: a\n    conversation: [b]\n    expect: answered",
            "give either 'question' or 'conversation', not both",
        ),
        ("- name: no-question\n    expect: answered", "needs a 'question' (or a 'conversation')"),
        (
            "- name: empty-talk\n    conversation: []\n    expect: answered",
            "'conversation' must be a list of the patient's messages",
        ),
        (
            "- name: odd-turn\n    conversation: [hi, [x]]\n    expect: answered",
            "'conversation' message(s) 2 must be text",
        ),
        ("- name: number\n    question: 12\n    expect: answered", "'question' must be text, found int"),
        ("- name: good\n    question: b\n    expect: answered", "the name 'good' is already used by case 1"),
    ],
    ids=[
        "question-and-conversation",
        "no-question",
        "empty-conversation",
        "odd-turn",
        "number-question",
        "duplicate-name",
    ],
)
def test_malformed_question_is_named(tmp_path, entry, message):
    path = write(tmp_path, f"cases:{GOOD}  {entry}\n")
    with pytest.raises(EvalFileError) as raised:
        load_cases(path)
    assert f"{path}: case 2 (" in str(raised.value)
    assert message in str(raised.value)


def test_entry_without_a_name_is_named_by_its_number(tmp_path):
    path = write(tmp_path, f"cases:{GOOD}  - just a string\n")
    with pytest.raises(
        EvalFileError,
        match=r"case 2 \(no name, line 5\): expected a mapping with name, question and expect, found text",
    ):
        load_cases(path)


def test_every_problem_in_the_file_is_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        """
        cases:
          - name: first
            question: a
            expect: maybe
          - name: second
            expect: urgent
        """,
    )
    with pytest.raises(EvalFileError) as raised:
        load_cases(path)
    lines = str(raised.value).splitlines()
    assert len(lines) == 2
    assert "case 1 ('first', line 2): 'expect'" in lines[0]
    assert "case 2 ('second', line 5): needs a 'question'" in lines[1]


@pytest.mark.parametrize(
    "text, message",
    [
        ("cases: [\n", "line 2: not valid YAML"),
        ("- name: a\n", "expected a mapping with a 'cases:' list at the top, found a list"),
        ("", "expected a mapping with a 'cases:' list at the top, found nothing"),
        ("cases: []\n", "'cases:' must be a non-empty list of test cases, found a list"),
        ("case:\n  - name: a\n", "unknown top-level key(s) case"),
    ],
    ids=["not-yaml", "list-at-top", "empty-file", "no-cases", "misspelled-cases"],
)
def test_malformed_file_is_refused_with_the_file_named(tmp_path, text, message):
    path = tmp_path / "set.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(EvalFileError) as raised:
        load_cases(path)
    assert str(raised.value).startswith(str(path))
    assert message in str(raised.value)


def test_missing_or_binary_file_is_refused(tmp_path):
    with pytest.raises(EvalFileError, match="cannot read the test set"):
        load_cases(tmp_path / "absent.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"cases:\n  - name: \xff\n")
    with pytest.raises(EvalFileError, match="not UTF-8"):
        load_cases(binary)


# -- checking a reply -----------------------------------------------------------------------------


def test_status_mismatch_fails_with_both_statuses():
    case = Case("c", "q", ANSWERED)
    assert check(case, reply(ANSWERED)) == []
    assert check(case, reply(NOT_COVERED)) == ["expected answered, got not_covered"]


def test_section_matches_a_whole_trailing_part_of_the_path():
    got = reply(sections=(INFECTION,))
    assert check(Case("c", "q", ANSWERED, section="Infection Risk"), got) == []
    assert check(Case("c", "q", ANSWERED, section="infection  risk"), got) == []
    assert check(Case("c", "q", ANSWERED, section=INFECTION), got) == []
    assert check(Case("c", "q", ANSWERED, section="Risk"), got) == [f"no source 'Risk' (sources: {INFECTION})"]
    assert check(Case("c", "q", ANSWERED, section="Potential Side Effects"), got) != []


def test_section_and_article_must_belong_to_the_same_source():
    got = reply(sections=(INFECTION,))
    assert check(Case("c", "q", ANSWERED, section="Infection Risk", article=ARTICLE.upper()), got) == []
    assert check(Case("c", "q", ANSWERED, section="Infection Risk", article="Another article"), got) == [
        f"no source 'Infection Risk' in 'Another article' (sources: {INFECTION})"
    ]
    assert check(Case("c", "q", ANSWERED, article="Another article"), got) != []


def test_phrases_are_checked_without_case_spacing_or_markdown_escapes():
    got = reply(answer="From *the article*: the needle\\_type and **Pain   Reduction**")
    assert check(Case("c", "q", ANSWERED, must_include=("needle_type", "pain reduction")), got) == []
    assert check(Case("c", "q", ANSWERED, must_include=("infection",)), got) == ["answer lacks 'infection'"]
    assert check(Case("c", "q", ANSWERED, must_not_include=("NEEDLE_TYPE",)), got) == ["answer contains 'NEEDLE_TYPE'"]


def test_a_case_that_crashes_fails_and_the_run_goes_on():
    cases = [Case("boom", "first", ANSWERED), Case("fine", "second", ANSWERED)]
    asked = []

    def ask(question, history):
        asked.append(question)
        if question == "first":
            raise RuntimeError("store exploded")
        return reply()

    results = run_eval(cases, ask)
    assert asked == ["first", "second"]
    assert [r.passed for r in results] == [False, True]
    assert results[0].reasons == ("crashed: RuntimeError: store exploded",)
    assert not all_passed(results)


def test_conversation_turns_are_passed_as_history():
    seen = []
    run_eval(
        [Case("c", "Does it help?", ANSWERED, history=("What is dry needling?",))],
        lambda q, h: seen.append((q, h)) or reply(),
    )
    assert seen == [("Does it help?", [{"role": "user", "content": "What is dry needling?"}])]


def test_no_results_never_count_as_passed():
    assert not all_passed([])


# -- reports --------------------------------------------------------------------------------------


def test_table_names_each_failed_case_and_why():
    results = run_eval([Case("ok", "q", ANSWERED), Case("wrong-status", "q", NOT_COVERED)], lambda q, h: reply())
    table = table_text(results)
    assert "PASS    ok" in table
    assert "FAIL    wrong-status" in table
    assert "expected not_covered, got answered" in table
    assert table.splitlines()[-1] == "FAILED: 1 of 2 cases passed (1 failed) on index version 1"


HOSTILE = '<script>alert("x")</script> | **bold** [link](http://x)'


def test_html_report_escapes_every_value():
    results = run_eval([Case(HOSTILE, HOSTILE, NOT_COVERED)], lambda q, h: reply(answer=HOSTILE, sections=(HOSTILE,)))
    page = html_report(results, HOSTILE)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert page.count("&lt;script&gt;") >= 5  # title, heading, case, question, sources, answer


def test_markdown_report_escapes_every_value_and_keeps_the_table_shape():
    results = run_eval([Case(HOSTILE, HOSTILE, NOT_COVERED)], lambda q, h: reply(answer="a ``` b", sections=(HOSTILE,)))
    text = markdown_report(results, "set.yaml")
    row = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    assert row.count(" | ") == 7  # the pipes inside the values are escaped
    assert re.search(r"(?<!\\)<", text) is None  # every "<" is escaped, so none can open a tag
    assert "\\<script>alert" in text
    assert "````text\na ``` b\n````" in text  # the failed answer, verbatim, in a fence it cannot close


def test_report_must_be_markdown_or_html(tmp_path):
    with pytest.raises(EvalFileError, match=r"name it \.md \(Markdown\) or \.html"):
        write_report(tmp_path / "report.txt", [], "x")
    assert not (tmp_path / "report.txt").exists()


# -- against the real model and index (``embedder`` and ``settings`` come from conftest.py) --------


def run_cli(*args: str, settings, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "ASSISTANT_CORPUS_DIR": str(settings.corpus_dir),
        "ASSISTANT_INDEX_DIR": str(settings.index_dir),
        "HF_HUB_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    env.pop("ASSISTANT_CHROMA_URL", None)  # the embedded store in the index dir above
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_eval_command_passes_the_project_set_and_writes_an_html_report(settings, tmp_path):
    report = tmp_path / "out" / "report.html"
    done = run_cli("-m", "assistant", "eval", "corpus/staff-set.yaml", "--report", str(report), settings=settings)
    assert done.returncode == 0, done.stdout + done.stderr
    cases = len(yaml.safe_load(STAFF_SET.read_text(encoding="utf-8"))["cases"])
    assert f"PASSED: {cases} of {cases} cases passed" in done.stdout
    assert "FAIL " not in done.stdout
    page = report.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert page.count('<tr class="pass">') == cases


WRONG_EXPECTATION = """
cases:
  - name: what-is-it
    question: What is dry needling?
    expect: answered
    section: What is Dry Needling?
  - name: infection-wrongly-expected-not-covered
    question: Is there a risk of infection?
    expect: not_covered
"""


@pytest.mark.slow
def test_eval_command_fails_and_names_the_case_with_a_wrong_expectation(settings, tmp_path):
    path = write(tmp_path, WRONG_EXPECTATION)
    report = tmp_path / "report.md"
    done = run_cli("-m", "assistant", "eval", str(path), "--report", str(report), settings=settings)
    assert done.returncode == 1, done.stdout + done.stderr
    failed = [line for line in done.stdout.splitlines() if " FAIL " in f" {line} "]
    assert len(failed) == 1
    assert "infection-wrongly-expected-not-covered" in failed[0]
    assert "expected not_covered, got answered" in failed[0]
    assert "FAILED: 1 of 2 cases passed" in done.stdout
    assert "| FAIL | infection-wrongly-expected-not-covered |" in report.read_text(encoding="utf-8")


def test_eval_command_refuses_a_malformed_file_before_asking_anything(tmp_path):
    path = write(tmp_path, f"cases:{GOOD}  - name: typo\n    question: Is it safe?\n    expect: answerd\n")
    settings = load_settings(index_dir=tmp_path / "no-index")  # never opened: the file is checked first
    done = run_cli("-m", "assistant", "eval", str(path), settings=settings)
    assert done.returncode == 2
    assert f"{path}: case 2 ('typo', line 5): 'expect' must be one of" in done.stderr
    assert "PASS" not in done.stdout and "FAIL" not in done.stdout


def test_eval_command_refuses_an_unknown_report_type_before_asking_anything(tmp_path):
    settings = load_settings(index_dir=tmp_path / "no-index")
    done = run_cli("-m", "assistant", "eval", str(STAFF_SET), "--report", str(tmp_path / "r.pdf"), settings=settings)
    assert done.returncode == 2
    assert "name it .md (Markdown) or .html" in done.stderr


# -- the ingest gate ------------------------------------------------------------------------------


def copy_corpus(tmp_path: Path, drop_section: str | None = None) -> Path:
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "corpus", corpus, dirs_exist_ok=True)
    if drop_section:
        article = corpus / "dry-needling-for-back-pain.md"
        text = article.read_text(encoding="utf-8")
        start = text.index(f"### {drop_section}")
        end = text.index("\n#", start + 1)
        article.write_text(text[:start] + text[end + 1 :], encoding="utf-8")
    return corpus


def gated_ingest(settings, embedder, gate=None, full=False):
    return reindex(settings, embedder=embedder, gate=gate, full=full)


@pytest.mark.slow
def test_gate_with_a_failing_set_publishes_nothing(tmp_path, embedder):
    settings = load_settings(corpus_dir=copy_corpus(tmp_path), index_dir=tmp_path / "index")
    first = gated_ingest(settings, embedder)
    assert first.published
    gate = make_gate(write(tmp_path, WRONG_EXPECTATION), settings, embedder)

    report = gated_ingest(settings, embedder, gate=gate, full=True)

    assert not report.published
    assert "Gate failed: version 2 was not published" in report.message
    assert "infection-wrongly-expected-not-covered" in report.message
    assert "expected not_covered, got answered" in report.message
    store = open_store(settings.index_dir, None)
    assert store.active().version == first.version == 1
    assert store.versions() == [1]  # the candidate was dropped


@pytest.mark.slow
def test_gate_checks_the_candidate_version_not_the_active_one(tmp_path, embedder):
    """The active version lacks the infection section; only the candidate can pass the set."""
    corpus = copy_corpus(tmp_path, drop_section="Infection Risk")
    settings = load_settings(corpus_dir=corpus, index_dir=tmp_path / "index")
    assert gated_ingest(settings, embedder).published
    infection = write(
        tmp_path,
        """
        cases:
          - name: infection
            question: Is there a risk of infection?
            expect: answered
            section: Infection Risk
        """,
    )
    gate = make_gate(infection, settings, embedder)
    store = open_store(settings.index_dir, None)
    passed_on_active, _ = gate(store.active(), store.open(store.active()))
    store.close()
    assert passed_on_active is False  # so the set really does tell the two versions apart

    shutil.copy(ROOT / "corpus" / "dry-needling-for-back-pain.md", corpus / "dry-needling-for-back-pain.md")
    report = gated_ingest(settings, embedder, gate=gate)

    assert report.published, report.message
    assert open_store(settings.index_dir, None).active().version == 2


def test_gate_refuses_a_malformed_set_before_ingest_starts(tmp_path):
    path = write(tmp_path, "cases:\n  - name: x\n    question: q\n")
    with pytest.raises(EvalFileError, match=r"case 1 \('x', line 2\): 'expect'"):
        make_gate(path, load_settings(index_dir=tmp_path / "index"))


@pytest.fixture(scope="module")
def refused_by_gate_cli(tmp_path_factory, settings):
    """``python ingest.py --full --gate FILE`` with a set that fails, on a copy of the shared index."""
    root = tmp_path_factory.mktemp("gate-cli")
    index_dir = root / "index"
    shutil.copytree(settings.index_dir, index_dir)
    store = open_store(index_dir, None)
    before = (store.active().version, store.versions())
    path = write(root, WRONG_EXPECTATION)
    done = run_cli(
        "ingest.py",
        "--full",
        "--quiet",
        "--gate",
        str(path),
        settings=settings.model_copy(update={"index_dir": index_dir}),
    )
    return done, store, before


@pytest.mark.slow
def test_ingest_script_with_a_failing_gate_says_why_and_keeps_the_active_version(refused_by_gate_cli):
    done, store, (active, versions) = refused_by_gate_cli
    assert f"Gate failed: version {max(versions) + 1} was not published." in done.stdout
    assert "infection-wrongly-expected-not-covered" in done.stdout
    assert store.active().version == active
    assert store.versions() == versions


@pytest.mark.slow
def test_ingest_script_with_a_failing_gate_exits_non_zero(refused_by_gate_cli):
    done, _, _ = refused_by_gate_cli
    assert done.returncode != 0
