"""Red-flag triage and known not-covered topics, from clinic-editable rules in ``corpus/safety``.

A message is split into clauses; a clause that opens with a negation ("no numbness") is set
aside. Every other clause is matched against each flag's patterns, and compared in meaning with
each flag's example phrasings, so lay wording and paraphrases are caught as well.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .errors import CorpusError

RED_FLAGS_FILE = Path("safety/red-flags.yaml")
NOT_COVERED_FILE = Path("safety/not-covered.yaml")
TIERS = ("crisis", "emergency", "urgent")
_CLAUSE_BREAK = re.compile(r"[.!?;:\n\u3002\uff01\uff1f]+|,|\bbut\b|\bhowever\b|\balthough\b|\bthough\b|\bexcept\b")
_SPACES = re.compile(r"\s+")
MIN_CLAUSE_WORDS = 3


@dataclass(frozen=True)
class RedFlag:
    id: str
    tier: str
    title: str
    message: str
    patterns: tuple[re.Pattern[str], ...]
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Topic:
    id: str
    patterns: tuple[re.Pattern[str], ...]
    ask: str


@dataclass
class SafetyRules:
    flags: tuple[RedFlag, ...]
    topics: tuple[Topic, ...]
    default_ask: str
    threshold: float
    negation_openers: tuple[str, ...]
    negation_near: re.Pattern[str]
    reassuring: re.Pattern[str] = re.compile(r"(?!)")
    example_vectors: np.ndarray | None = None  # one row per (flag, example), unit length
    example_owner: tuple[int, ...] = ()


@dataclass(frozen=True)
class Finding:
    flag: RedFlag
    clause: str
    how: str  # "pattern" or "similar to: <example>"


@dataclass(frozen=True)
class Triage:
    findings: tuple[Finding, ...] = ()

    @property
    def urgent(self) -> bool:
        return bool(self.findings)

    def flags(self) -> list[RedFlag]:
        """Distinct flags, most serious tier first."""
        seen: dict[str, RedFlag] = {}
        for finding in sorted(self.findings, key=lambda f: TIERS.index(f.flag.tier)):
            seen.setdefault(finding.flag.id, finding.flag)
        return list(seen.values())


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorpusError(f"{path} is missing: the assistant needs it to triage messages") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: not valid UTF-8 YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CorpusError(f"{path}: expected 'key: value' entries at the top level")
    return data


def _compile(path: Path, where: str, patterns: object) -> tuple[re.Pattern[str], ...]:
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise CorpusError(f"{path}: {where}: 'patterns' must be a list of strings")
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise CorpusError(f"{path}: {where}: pattern {pattern!r} is not a valid expression: {exc}") from None
    return tuple(compiled)


def load_rules(corpus_dir: Path) -> SafetyRules:
    """Read and validate both rule files; errors name the file and the entry."""
    flags_path, topics_path = corpus_dir / RED_FLAGS_FILE, corpus_dir / NOT_COVERED_FILE
    data = _load_yaml(flags_path)
    flags = []
    for number, entry in enumerate(data.get("flags") or [], start=1):
        where = f"flag {number} ({entry.get('id', 'no id') if isinstance(entry, dict) else entry!r})"
        if not isinstance(entry, dict):
            raise CorpusError(f"{flags_path}: {where}: expected id, tier, title, message, patterns, examples")
        missing = [k for k in ("id", "tier", "title", "message", "examples") if not entry.get(k)]
        if missing:
            raise CorpusError(f"{flags_path}: {where}: missing {', '.join(missing)}")
        if entry["tier"] not in TIERS:
            raise CorpusError(f"{flags_path}: {where}: tier {entry['tier']!r} is not one of {', '.join(TIERS)}")
        flags.append(
            RedFlag(
                id=str(entry["id"]),
                tier=str(entry["tier"]),
                title=str(entry["title"]),
                message=" ".join(str(entry["message"]).split()),
                patterns=_compile(flags_path, where, entry.get("patterns") or []),
                examples=tuple(str(e) for e in entry["examples"]),
            )
        )
    if not flags:
        raise CorpusError(f"{flags_path}: no flags defined; the assistant will not run without red-flag triage")
    negation = data.get("negation") or {}
    near = [re.escape(w) for w in negation.get("near") or []]
    topics_data = _load_yaml(topics_path)
    topics = []
    for number, entry in enumerate(topics_data.get("topics") or [], start=1):
        where = f"topic {number} ({entry.get('id', 'no id') if isinstance(entry, dict) else entry!r})"
        if not isinstance(entry, dict) or not entry.get("id") or not entry.get("ask"):
            raise CorpusError(f"{topics_path}: {where}: needs id, patterns and ask")
        topics.append(Topic(str(entry["id"]), _compile(topics_path, where, entry.get("patterns")), str(entry["ask"])))
    return SafetyRules(
        flags=tuple(flags),
        topics=tuple(topics),
        default_ask=str(topics_data.get("default_ask") or "your physical therapist or doctor"),
        threshold=float(data.get("similarity_threshold", 0.72)),
        negation_openers=tuple(normalise(o) for o in negation.get("openers") or []),
        reassuring=_word_pattern(negation.get("reassuring") or []),
        negation_near=re.compile(rf"\b({'|'.join(near)})\b[\w\s']{{0,12}}$" if near else r"(?!)", re.IGNORECASE),
    )


def _word_pattern(words: list[str]) -> re.Pattern[str]:
    if not words:
        return re.compile(r"(?!)")
    return re.compile(rf"\b({'|'.join(re.escape(normalise(w)) for w in words)})\b")


def example_texts(rules: SafetyRules) -> tuple[list[str], tuple[int, ...]]:
    texts, owner = [], []
    for index, flag in enumerate(rules.flags):
        for example in flag.examples:
            texts.append(example)
            owner.append(index)
    return texts, tuple(owner)


def normalise(text: str) -> str:
    """Lower case, compatible characters, straight apostrophes, single spaces."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return _SPACES.sub(" ", text).strip().casefold()


def clauses(text: str) -> list[str]:
    return [c.strip(" -'\"") for c in _CLAUSE_BREAK.split(normalise(text)) if c.strip(" -'\"")]


def is_negated(clause: str, rules: SafetyRules) -> bool:
    return any(clause == o or clause.startswith(o + " ") for o in rules.negation_openers)


def match_patterns(clause: str, flag: RedFlag, rules: SafetyRules) -> bool:
    for pattern in flag.patterns:
        for match in pattern.finditer(clause):
            if not rules.negation_near.search(clause[: match.start()]):
                return True
    return False


def clauses_to_embed(text: str, rules: SafetyRules) -> list[str]:
    """The clauses worth comparing by meaning: affirmed ones of a few words or more."""
    return [c for c in clauses(text) if comparable(c, rules)]


def comparable(clause: str, rules: SafetyRules) -> bool:
    return not is_negated(clause, rules) and len(clause.split()) >= MIN_CLAUSE_WORDS and not rules.reassuring.search(clause)


def triage(
    text: str, rules: SafetyRules, clause_vectors: Callable[[list[str]], np.ndarray] | None = None
) -> Triage:
    """Find red flags in ``text``. ``clause_vectors`` embeds clauses; without it only patterns run."""
    findings: list[Finding] = []
    found: set[str] = set()
    affirmed = [c for c in clauses(text) if not is_negated(c, rules)]
    for clause in affirmed:
        for flag in rules.flags:
            if flag.id not in found and match_patterns(clause, flag, rules):
                findings.append(Finding(flag, clause, "pattern"))
                found.add(flag.id)
    candidates = [c for c in affirmed if comparable(c, rules)]
    if clause_vectors is not None and rules.example_vectors is not None and candidates:
        similarity = clause_vectors(candidates) @ rules.example_vectors.T
        for row, clause in enumerate(candidates):
            best = int(np.argmax(similarity[row]))
            flag = rules.flags[rules.example_owner[best]]
            if similarity[row, best] >= rules.threshold and flag.id not in found:
                example = flag.examples[best - rules.example_owner.index(rules.example_owner[best])]
                findings.append(Finding(flag, clause, f"similar to: {example} ({similarity[row, best]:.2f})"))
                found.add(flag.id)
    return Triage(tuple(findings))


def not_covered_topic(text: str, rules: SafetyRules) -> Topic | None:
    for clause in clauses(text):
        for topic in rules.topics:
            if any(p.search(clause) for p in topic.patterns):
                return topic
    return None
