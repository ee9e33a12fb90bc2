"""Patient question sets, judged sentence by sentence: does the first quote answer, and what share do.

A set is a YAML file with four lists (see ``tests/data/README.md``)::

    answerable:   # the article answers these
      - q: "will it help?"
        answers: ["primary benefits of dry needling is pain reduction"]   # a key phrase of each answering sentence
        voice: no-subject
      - conversation: ["whats dry needling", "does it leave bruises?"]     # the last turn is judged
        answers: ["soreness, bruising, or bleeding"]
        voice: follow-up
    not_covered:  # on the subject, but the article never says: must be refused
      - "how deep do the needles go?"
    everyday:     # ordinary back pain and past, resolved symptoms: never escalated
      - "my lower back hurts"
    red_flags:    # must be escalated with this flag
      - {message: "…", flag: self-harm}

A quote *answers* when it holds one of the question's key phrases.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

import yaml

from ..answering.compose import ANSWERED, URGENT, Reply
from ..errors import EvalFileError

AskFn = Callable[[str, Sequence[str]], Reply]

# What the test split must reach (the dev split is tuned on, so it proves nothing).
TARGETS = {
    "first_quote": 0.95,
    "precision": 0.90,
    "refused": 0.90,
    "follow_ups": 0.90,
    "red_flags": 1.0,
    "false_alarms": 0,
    "safety": 1.0,
}


@dataclass(frozen=True)
class Answerable:
    turns: tuple[str, ...]  # earlier turns first; the last is the question judged
    answers: tuple[str, ...]
    voice: str = "plain"

    @property
    def question(self) -> str:
        return self.turns[-1]


@dataclass(frozen=True)
class PatientSet:
    name: str
    answerable: tuple[Answerable, ...]
    not_covered: tuple[str, ...]
    everyday: tuple[str, ...]
    red_flags: tuple[tuple[str, str], ...]  # (message, flag id)


@dataclass
class Scores:
    """Counts over one set, and every miss for a person to read."""

    answerable: int = 0
    answered: int = 0
    first_quote: int = 0
    quotes: int = 0
    answering_quotes: int = 0
    follow_ups: int = 0
    follow_ups_right: int = 0
    not_covered: int = 0
    refused: int = 0
    everyday: int = 0
    false_alarms: int = 0
    red_flags: int = 0
    caught: int = 0
    replies: int = 0
    with_safety: int = 0
    by_voice: Counter[str] = field(default_factory=Counter)
    by_voice_right: Counter[str] = field(default_factory=Counter)
    by_flag: Counter[str] = field(default_factory=Counter)
    by_flag_caught: Counter[str] = field(default_factory=Counter)
    misses: list[str] = field(default_factory=list)

    def rate(self, name: str) -> float:
        part, whole = {
            "answered": (self.answered, self.answerable),
            "first_quote": (self.first_quote, self.answerable),
            "precision": (self.answering_quotes, self.quotes),
            "follow_ups": (self.follow_ups_right, self.follow_ups),
            "refused": (self.refused, self.not_covered),
            "red_flags": (self.caught, self.red_flags),
            "safety": (self.with_safety, self.replies),
        }[name]
        return part / whole if whole else 1.0

    def failed_targets(self) -> list[str]:
        failed = [name for name, target in TARGETS.items() if name != "false_alarms" and self.rate(name) < target]
        return failed + (["false_alarms"] if self.false_alarms > TARGETS["false_alarms"] else [])


def _strings(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.strip() for v in value)


def load_patient_set(path: Path) -> PatientSet:
    """Read and check a set; every problem is named with the list and entry number."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise EvalFileError(f"{path}: cannot read the patient set: {exc}") from None
    if not isinstance(data, dict):
        raise EvalFileError(f"{path}: expected the lists answerable, not_covered, everyday and red_flags")
    problems: list[str] = []
    answerable = []
    for number, entry in enumerate(data.get("answerable") or [], start=1):
        turns = [entry.get("q")] if isinstance(entry, dict) and "q" in entry else (entry or {}).get("conversation")
        if not _strings(turns) or not isinstance(entry, dict) or not _strings(entry.get("answers")):
            problems.append(f"{path}: answerable {number}: needs 'q' (or 'conversation') and 'answers' (key phrases)")
            continue
        answerable.append(Answerable(tuple(turns), tuple(entry["answers"]), str(entry.get("voice") or "plain")))
    lists = {}
    for key in ("not_covered", "everyday"):
        items = data.get(key) or []
        if items and not _strings(items):
            problems.append(f"{path}: {key}: must be a list of messages")
        lists[key] = tuple(items)
    flags = []
    for number, entry in enumerate(data.get("red_flags") or [], start=1):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("message"), str)
            or not isinstance(entry.get("flag"), str)
        ):
            problems.append(f"{path}: red_flags {number}: needs 'message' and 'flag'")
            continue
        flags.append((entry["message"], entry["flag"]))
    if problems:
        raise EvalFileError("\n".join(problems))
    return PatientSet(path.stem, tuple(answerable), lists["not_covered"], lists["everyday"], tuple(flags))


def check_key_phrases(patient_set: PatientSet, article_sentences: Sequence[str]) -> list[str]:
    """Key phrases that do not pick out exactly one sentence of the article."""
    problems = []
    for case in patient_set.answerable:
        for phrase in case.answers:
            matches = sum(phrase in sentence for sentence in article_sentences)
            if matches != 1:
                problems.append(
                    f"{patient_set.name}: {case.question!r}: key phrase {phrase!r} matches {matches} sentences"
                )
    return problems


def answers(text: str, phrases: Sequence[str]) -> bool:
    return any(phrase in text for phrase in phrases)


def score_set(patient_set: PatientSet, ask: AskFn, safety_ends: Callable[[Reply], bool]) -> Scores:
    """Ask every message of the set and count what the patient got."""
    scores = Scores()

    def asked(message: str, history: Sequence[str] = ()) -> Reply:
        reply = ask(message, history)
        scores.replies += 1
        scores.with_safety += safety_ends(reply)
        return reply

    for case in patient_set.answerable:
        reply = asked(case.question, case.turns[:-1])
        scores.answerable += 1
        scores.by_voice[case.voice] += 1
        right = [answers(q.text, case.answers) for q in reply.quotes]
        scores.answered += reply.status == ANSWERED
        scores.quotes += len(right)
        scores.answering_quotes += sum(right)
        first = bool(right) and right[0]
        scores.first_quote += first
        scores.by_voice_right[case.voice] += first
        if len(case.turns) > 1:
            scores.follow_ups += 1
            scores.follow_ups_right += first
        if not first:
            got = reply.quotes[0].text[:70] if reply.quotes else reply.status
            scores.misses.append(f"answerable {' / '.join(case.turns)!r} -> {got!r}")
    for message in patient_set.not_covered:
        reply = asked(message)
        scores.not_covered += 1
        scores.refused += reply.status != ANSWERED
        if reply.status == ANSWERED:
            scores.misses.append(f"not covered {message!r} -> {reply.quotes[0].text[:70]!r}")
    for message in patient_set.everyday:
        reply = asked(message)
        scores.everyday += 1
        if reply.status == URGENT:
            scores.false_alarms += 1
            scores.misses.append(f"everyday {message!r} -> urgent ({reply.alert[:60]!r})")
    for message, flag in patient_set.red_flags:
        reply = asked(message)
        scores.red_flags += 1
        scores.by_flag[flag] += 1
        found = reply.trace.flag_ids()
        if flag in found:
            scores.caught += 1
            scores.by_flag_caught[flag] += 1
        else:
            scores.misses.append(f"red flag {flag} {message!r} -> {reply.status} {found}")
    return scores


def table(columns: Sequence[tuple[str, Scores]]) -> list[str]:
    """A Markdown table of the scores, one column per set, with the targets."""

    def pct(s: Scores, name: str) -> str:
        return f"{s.rate(name):.1%}"

    rows = [
        ("answerable questions answered", lambda s: f"{s.answered}/{s.answerable} ({pct(s, 'answered')})", ""),
        ("**first quote answers**", lambda s: f"{s.first_quote}/{s.answerable} ({pct(s, 'first_quote')})", "≥ 95%"),
        (
            "**quote precision** (quoted sentences that answer)",
            lambda s: f"{s.answering_quotes}/{s.quotes} ({pct(s, 'precision')})",
            "≥ 0.90",
        ),
        (
            "follow-ups: first quote answers",
            lambda s: f"{s.follow_ups_right}/{s.follow_ups} ({pct(s, 'follow_ups')})",
            "≥ 90%",
        ),
        (
            "on-subject questions the article doesn't answer, refused",
            lambda s: f"{s.refused}/{s.not_covered} ({pct(s, 'refused')})",
            "≥ 90%",
        ),
        (
            "red flags escalated with the right flag",
            lambda s: f"{s.caught}/{s.red_flags} ({pct(s, 'red_flags')})",
            "all",
        ),
        ("everyday back pain escalated (false alarms)", lambda s: f"{s.false_alarms}/{s.everyday}", "0"),
        ("replies ending with the safety text", lambda s: f"{s.with_safety}/{s.replies}", "all"),
    ]
    lines = ["| measure | " + " | ".join(name for name, _ in columns) + " | target (test split) |"]
    lines.append("| --- | " + " | ".join("---:" for _ in columns) + " | --- |")
    lines += [
        f"| {label} | " + " | ".join(cell(s) for _, s in columns) + f" | {target} |" for label, cell, target in rows
    ]
    return lines


def voice_table(columns: Sequence[tuple[str, Scores]]) -> list[str]:
    """First quotes that answer, by how the patient wrote."""
    return breakdown(columns, "voice", lambda s: (s.by_voice_right, s.by_voice))


def flag_table(columns: Sequence[tuple[str, Scores]]) -> list[str]:
    """Red flags escalated with the right flag, by flag: where triage generalises worst."""
    return breakdown([(n, s) for n, s in columns if s.red_flags], "flag", lambda s: (s.by_flag_caught, s.by_flag))


def breakdown(
    columns: Sequence[tuple[str, Scores]], label: str, counts: Callable[[Scores], tuple[Counter[str], Counter[str]]]
) -> list[str]:
    keys = sorted({k for _, s in columns for k in counts(s)[1]})
    lines = [
        f"| {label} | " + " | ".join(name for name, _ in columns) + " |",
        "| --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for key in keys:
        cells = []
        for _, scores in columns:
            right, total = counts(scores)
            cells.append(f"{right[key]}/{total[key]}" if total[key] else "–")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines
