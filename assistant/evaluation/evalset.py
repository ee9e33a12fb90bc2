"""Staff test sets: questions with the reply staff expect, run against the assistant.

A test set is a YAML file that clinic staff write::

    cases:
      - name: infection-risk
        question: Is there a risk of infection?
        expect: answered              # answered | not_covered | urgent | rejected
        section: Infection Risk       # optional: a source's section, or the end of it
        article: Dry Needling for Back Pain: Benefits and Risks   # optional
        must_include: [risk of infection]                         # optional, any case
        must_not_include: [guaranteed]                             # optional, any case
      - name: follow-up
        conversation:                 # earlier messages first; the last one is checked
          - What is dry needling?
          - Does it help?
        expect: answered

The whole file is checked before any question is asked, and a run always asks every case,
so a malformed file or a crash can never be reported as a pass.
"""

from __future__ import annotations

import html
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ..answering.compose import ANSWERED, NOT_COVERED, REJECTED, URGENT, Reply, Source, escape_markdown
from ..config import Settings
from ..errors import EvalFileError

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from ..articles.indexing import Gate
    from ..articles.manifest import Manifest
    from ..embeddings import Embedder

EXPECTABLE = (ANSWERED, NOT_COVERED, URGENT, REJECTED)
NO_SOURCES = (NOT_COVERED, REJECTED)  # replies with these statuses never quote the article
CASE_KEYS = ("name", "question", "conversation", "expect", "section", "article", "must_include", "must_not_include")
TOP_KEYS = ("cases", "description")
MAX_FILE_BYTES = 1_000_000
_MD_UNESCAPE = re.compile(r"\\([\\`*_\[\]<|~])")

AskFn = Callable[[str, list[dict[str, str]]], Reply]


@dataclass(frozen=True)
class Case:
    name: str
    question: str
    expect: str
    history: tuple[str, ...] = ()
    section: str | None = None
    article: str | None = None
    must_include: tuple[str, ...] = ()
    must_not_include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    case: Case
    passed: bool
    reasons: tuple[str, ...]  # why it failed; empty when it passed
    status: str
    sections: tuple[str, ...]
    answer: str
    index_version: int | None
    seconds: float


# -- reading a test set ---------------------------------------------------------------------------


def load_cases(path: Path, label: str | None = None) -> list[Case]:
    """Read and validate a whole test set; raise ``EvalFileError`` listing every problem in it."""
    label = label or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EvalFileError(f"{label}: cannot read the test set ({exc.strerror or exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise EvalFileError(f"{label}: {len(raw):,} bytes is too large for a test set (limit {MAX_FILE_BYTES:,})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EvalFileError(f"{label}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise EvalFileError(f"{label}{where}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise EvalFileError(f"{label}: expected a mapping with a 'cases:' list at the top, found {_kind(data)}")
    unknown = [str(k) for k in data if k not in TOP_KEYS]
    if unknown:
        raise EvalFileError(f"{label}: unknown top-level key(s) {', '.join(unknown)}; allowed: {', '.join(TOP_KEYS)}")
    entries = data.get("cases")
    if not isinstance(entries, list) or not entries:
        raise EvalFileError(f"{label}: 'cases:' must be a non-empty list of test cases, found {_kind(entries)}")

    lines = _entry_lines(text)
    cases: list[Case] = []
    problems: list[str] = []
    first_use: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        name = entry.get("name") if isinstance(entry, dict) else None
        line = f", line {lines[number - 1]}" if number <= len(lines) else ""
        where = (
            f"{label}: case {number} ({name!r}{line})"
            if isinstance(name, str)
            else f"{label}: case {number} (no name{line})"
        )
        case, found = _parse_case(entry)
        if case is not None and case.name in first_use:
            found.append(f"the name {case.name!r} is already used by case {first_use[case.name]}")
        elif case is not None:
            first_use[case.name] = number
        problems.extend(f"{where}: {problem}" for problem in found)
        if case is not None and not found:
            cases.append(case)
    if problems:
        raise EvalFileError("\n".join(problems))
    return cases


def _parse_case(entry: object) -> tuple[Case | None, list[str]]:
    if not isinstance(entry, dict):
        return None, [f"expected a mapping with name, question and expect, found {_kind(entry)}"]
    problems: list[str] = []
    unknown = [str(k) for k in entry if k not in CASE_KEYS]
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(CASE_KEYS)}")

    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append("'name' is missing or empty")
    elif "\n" in name.strip():
        problems.append("'name' must fit on one line")

    question, history = _parse_question(entry, problems)
    expect = entry.get("expect")
    if expect not in EXPECTABLE:
        found = "it is missing" if expect is None else f"found {expect!r}"
        problems.append(f"'expect' must be one of {', '.join(EXPECTABLE)}; {found}")

    places: dict[str, str | None] = {}
    for key in ("section", "article"):
        value = entry.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            problems.append(f"'{key}' must be non-empty text")
            value = None
        if value is not None and expect in NO_SOURCES:
            problems.append(f"'{key}' can never match: a {expect} reply quotes no sources")
        places[key] = value.strip() if isinstance(value, str) else None

    phrases = _parse_phrases(entry, problems)

    if not isinstance(name, str) or not name.strip():
        return None, problems
    case = Case(
        name=name.strip(),
        question=question,
        expect=str(expect),
        history=history,
        section=places["section"],
        article=places["article"],
        must_include=phrases["must_include"],
        must_not_include=phrases["must_not_include"],
    )
    return case, problems


def _parse_question(entry: dict, problems: list[str]) -> tuple[str, tuple[str, ...]]:
    """The question checked, and the patient's earlier messages of a ``conversation``."""
    if "question" in entry and "conversation" in entry:
        problems.append("give either 'question' or 'conversation', not both")
    elif "question" in entry:
        if isinstance(entry["question"], str):
            return entry["question"], ()
        problems.append(f"'question' must be text, found {_kind(entry['question'])}")
    elif "conversation" in entry:
        turns = entry["conversation"]
        if not isinstance(turns, list) or not turns:
            problems.append("'conversation' must be a list of the patient's messages, the last one being checked")
        elif bad := [n for n, turn in enumerate(turns, start=1) if not isinstance(turn, str)]:
            problems.append(f"'conversation' message(s) {', '.join(map(str, bad))} must be text")
        else:
            *earlier, question = turns
            return question, tuple(earlier)
    else:
        problems.append("needs a 'question' (or a 'conversation')")
    return "", ()


def _parse_phrases(entry: dict, problems: list[str]) -> dict[str, tuple[str, ...]]:
    """``must_include`` and ``must_not_include``: lists of phrases, none in both."""
    phrases: dict[str, tuple[str, ...]] = {}
    for key in ("must_include", "must_not_include"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
            problems.append(f"'{key}' must be a list of non-empty phrases, e.g. {key}: [\"risk of infection\"]")
            value = []
        phrases[key] = tuple(value)
    both = {_norm(p) for p in phrases["must_include"]} & {_norm(p) for p in phrases["must_not_include"]}
    if both:
        problems.append(f"phrase(s) {', '.join(sorted(map(repr, both)))} are in both must_include and must_not_include")
    return phrases


def _entry_lines(text: str) -> list[int]:
    """The line each entry of ``cases:`` starts on, so messages can point at it."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if getattr(key, "value", None) == "cases" and isinstance(value, yaml.SequenceNode):
                return [item.start_mark.line + 1 for item in value.value]
    return []


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    kinds: dict[type, str] = {dict: "a mapping", list: "a list", str: "text"}
    return kinds.get(type(value), type(value).__name__)


# -- running it -----------------------------------------------------------------------------------


def run_eval(cases: Sequence[Case], ask_fn: AskFn) -> list[Result]:
    """Ask every case and check its reply; a case that crashes fails, the run goes on."""
    results = []
    for case in cases:
        history = [{"role": "user", "content": turn} for turn in case.history]
        started = time.perf_counter()
        try:
            reply = ask_fn(case.question, history)
        except Exception as exc:  # recorded as this case's failure, so it can never pass unseen
            seconds = time.perf_counter() - started
            results.append(
                Result(case, False, (f"crashed: {type(exc).__name__}: {exc}",), "error", (), "", None, seconds)
            )
            continue
        reasons = tuple(check(case, reply))
        sections = tuple(source.section for source in reply.sources)
        seconds = time.perf_counter() - started
        results.append(
            Result(case, not reasons, reasons, reply.status, sections, reply.answer, reply.index_version, seconds)
        )
    return results


def check(case: Case, reply: Reply) -> list[str]:
    """Why ``reply`` does not meet ``case``; an empty list means it passes."""
    reasons = []
    if reply.status != case.expect:
        error = reply.trace.error
        reasons.append(f"expected {case.expect}, got {reply.status}" + (f" ({error})" if error else ""))
    if case.section or case.article:
        if not any(_source_matches(source, case) for source in reply.sources):
            wanted = " in ".join(repr(w) for w in (case.section, case.article) if w)
            found = "; ".join(source.section for source in reply.sources) or "none"
            reasons.append(f"no source {wanted} (sources: {found})")
    text = _plain(reply.answer)
    reasons += [f"answer lacks {phrase!r}" for phrase in case.must_include if _norm(phrase) not in text]
    reasons += [f"answer contains {phrase!r}" for phrase in case.must_not_include if _norm(phrase) in text]
    return reasons


def _source_matches(source: Source, case: Case) -> bool:
    if case.article and _norm(source.article) != _norm(case.article):
        return False
    if case.section:
        wanted = [_norm(part) for part in case.section.split(">")]
        have = [_norm(part) for part in source.section.split(">")]
        return have[-len(wanted) :] == wanted
    return True


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _plain(answer: str) -> str:
    """The answer as a patient reads it: Markdown escapes removed, spacing and case ignored."""
    return _norm(_MD_UNESCAPE.sub(r"\1", answer))


def all_passed(results: Sequence[Result]) -> bool:
    return bool(results) and all(result.passed for result in results)


# -- showing the results --------------------------------------------------------------------------


def summary_line(results: Sequence[Result]) -> str:
    failed = sum(not r.passed for r in results)
    verdict = "PASSED" if all_passed(results) else "FAILED"
    versions = sorted({r.index_version for r in results if r.index_version is not None})
    on = f" on index version {', '.join(map(str, versions))}" if versions else ""
    return (
        f"{verdict}: {len(results) - failed} of {len(results)} cases passed"
        + (f" ({failed} failed)" if failed else "")
        + on
    )


def table_text(results: Sequence[Result]) -> str:
    """A plain-text pass/fail table with the reason for every failure."""
    rows = [("#", "result", "case", "expected", "got", "reason")]
    for number, r in enumerate(results, start=1):
        rows.append(
            (str(number), "PASS" if r.passed else "FAIL", r.case.name, r.case.expect, r.status, "; ".join(r.reasons))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)) + "  " + row[5]
        for row in rows
    ]
    return "\n".join([*(line.rstrip() for line in lines), "", summary_line(results)])


def _cells(number: int, r: Result) -> list[str]:
    question = " / ".join([*r.case.history, r.case.question])
    return [
        str(number),
        "PASS" if r.passed else "FAIL",
        r.case.name,
        question if len(question) <= 200 else question[:200] + "…",
        r.case.expect,
        r.status,
        "; ".join(r.sections),
        "; ".join(r.reasons),
    ]


HEADERS = ["#", "Result", "Case", "Question", "Expected", "Got", "Sources", "Reason"]


def markdown_report(results: Sequence[Result], title: str) -> str:
    """The results as Markdown; every value is escaped, so nothing in a case or answer renders as markup."""

    def cell(text: str) -> str:
        return escape_markdown(" ".join(text.split())) or " "

    lines = [
        f"# Test set {cell(title)}",
        "",
        f"**{cell(summary_line(results))}** ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(cell(c) for c in _cells(n, r)) + " |" for n, r in enumerate(results, start=1)]
    failed = [(n, r) for n, r in enumerate(results, start=1) if not r.passed and r.answer]
    if failed:
        lines += ["", "## Answers of the failed cases"]
        for number, r in failed:
            lines += ["", f"### {number}. {cell(r.case.name)}", "", fenced(r.answer)]
    return "\n".join(lines) + "\n"


def html_report(results: Sequence[Result], title: str) -> str:
    """The results as a standalone HTML page; every value is escaped."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADERS)
    rows = []
    for number, r in enumerate(results, start=1):
        cells = "".join(f"<td>{esc(c)}</td>" for c in _cells(number, r))
        rows.append(f'<tr class="{"pass" if r.passed else "fail"}">{cells}</tr>')
    answers = "".join(
        f"<h3>{number}. {esc(r.case.name)}</h3><pre>{esc(r.answer)}</pre>"
        for number, r in enumerate(results, start=1)
        if not r.passed and r.answer
    )
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>Test set {esc(title)}</title>'
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:.3em .5em;vertical-align:top;text-align:left}"
        "tr.fail{background:#fde8e8}tr.pass{background:#e9f7ec}pre{white-space:pre-wrap}</style></head>"
        f"<body><h1>Test set {esc(title)}</h1>"
        f"<p><strong>{esc(summary_line(results))}</strong> ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        + (f"<h2>Answers of the failed cases</h2>{answers}" if answers else "")
        + "</body></html>\n"
    )


def fenced(text: str, info: str = "text") -> str:
    """A Markdown code block that shows ``text`` verbatim, whatever backticks it holds."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}{info}\n{text}\n{fence}"


REPORTS: dict[str, Callable[[Sequence[Result], str], str]] = {".md": markdown_report, ".html": html_report}


def write_report(path: Path, results: Sequence[Result], title: str) -> None:
    writer = REPORTS.get(path.suffix.lower())
    if writer is None:
        raise EvalFileError(f"report {path}: name it .md (Markdown) or .html (HTML)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(writer(results, title), encoding="utf-8")


# -- entry points ---------------------------------------------------------------------------------


def run_eval_command(path: Path, settings: Settings, report: str | Path | None = None) -> int:
    """``python -m assistant eval FILE``: 0 when every case passes, 1 otherwise."""
    from ..wiring import build

    report_path = Path(report) if report else None
    if report_path is not None and report_path.suffix.lower() not in REPORTS:
        raise EvalFileError(f"report {report_path}: name it .md (Markdown) or .html (HTML)")
    cases = load_cases(path)
    assistant = build(settings)
    assistant.reader.snapshot()  # no index or the wrong model: one clear error, not a table of failures
    results = run_eval(cases, assistant.ask)
    _out(table_text(results))
    if report_path is not None:
        write_report(report_path, results, path.name)
        _out(f"Report written to {report_path}")
    return 0 if all_passed(results) else 1


def make_gate(path: Path, settings: Settings, embedder: Embedder | None = None) -> Gate:
    """An ingest gate: publish the candidate version only if this test set passes on it."""
    from ..answering.retrieval import PinnedReader, Snapshot
    from ..wiring import build

    cases = load_cases(path)  # a malformed set stops ingest before anything is built

    def gate(manifest: Manifest, collection: Collection) -> tuple[bool, str]:
        candidate = PinnedReader(Snapshot.of(manifest, collection, settings.in_memory_chunks))
        assistant = build(settings, embedder=embedder, reader=candidate, warm=False)
        try:
            assistant.warm()
            results = run_eval(cases, assistant.ask)
        finally:
            assistant.services.store.close()
        return all_passed(results), f"Test set {path}:\n{table_text(results)}"

    return gate


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
