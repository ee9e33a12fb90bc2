"""Staff test sets: the YAML file clinic staff write, read and checked whole, and a case's result.

A test set::

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

The whole file is checked before any question is asked, so a malformed file is never run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..answering.compose import ANSWERED, NOT_COVERED, REJECTED, URGENT
from ..errors import EvalFileError

EXPECTABLE = (ANSWERED, NOT_COVERED, URGENT, REJECTED)


NO_SOURCES = (NOT_COVERED, REJECTED)  # replies with these statuses never quote the article


CASE_KEYS = ("name", "question", "conversation", "expect", "section", "article", "must_include", "must_not_include")


TOP_KEYS = ("cases", "description")


MAX_FILE_BYTES = 1_000_000


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
    both = {normalise_phrase(p) for p in phrases["must_include"]} & {
        normalise_phrase(p) for p in phrases["must_not_include"]
    }
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


def normalise_phrase(text: str) -> str:
    return " ".join(text.split()).casefold()


def all_passed(results: Sequence[Result]) -> bool:
    return bool(results) and all(result.passed for result in results)
