"""Red-flag triage and known not-covered topics, from clinic-editable rules in ``corpus/safety``.

A message is split into clauses; a clause that opens with a negation ("no numbness") is set
aside, unless a pattern takes the negation in ("no feeling down there"). Every other clause is matched against each flag's patterns, and compared in meaning with
each flag's example phrasings, so lay wording and paraphrases are caught as well.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from ..errors import CorpusError

RED_FLAGS_FILE = Path("safety/red-flags.yaml")
NOT_COVERED_FILE = Path("safety/not-covered.yaml")
TIERS = ("crisis", "emergency", "urgent")
_CLAUSE_BREAK = re.compile(r"[.!?;:\n\u3002\uff01\uff1f]+|,|\bbut\b|\bhowever\b|\balthough\b|\bthough\b|\bexcept\b")
_SPACES = re.compile(r"\s+")
MIN_CLAUSE_WORDS = 3
# A message that denies, doubts or supposes anything is read clause by clause only.
_HEDGED = re.compile(r"\b(no|not|never|without|none|nor|if|in case)\b|n't\b")
# At most this many clauses of one message are compared by meaning (the first and last halves):
# a message of a hundred clauses must not cost a hundred embeddings. Patterns still scan every clause.
MAX_EMBEDDED_CLAUSES = 6


@dataclass(frozen=True)
class RedFlag:
    id: str
    tier: str
    title: str
    message: str
    patterns: tuple[re.Pattern[str], ...]
    examples: tuple[str, ...]
    threshold: float | None = None  # similarity to an example that raises it; the file's default if None
    resolvable: bool = False  # a symptom the patient says has passed ("it's gone now") is not raised
    lasting: re.Pattern[str] | None = None  # ...unless it is one that never passes ("I had cancer years ago")
    # ...and, when set, only if the message says the patient is well now and nothing says it is back.
    recovered: re.Pattern[str] | None = None
    relapse: re.Pattern[str] | None = None
    # Raised when both of a pair match anywhere in the message, in any sentence: a means at hand
    # ("the rifle's in the truck") and a decision or a time ("at sunup") rarely share a clause.
    together: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = ()

    def cleared_by_passing(self, clause: str, message: str) -> bool:
        """Whether ``clause`` of ``message``, said to have passed, no longer raises this flag."""
        if not self.resolvable or (self.lasting and self.lasting.search(clause)):
            return False
        if self.recovered is None:
            return True
        return bool(self.recovered.search(message)) and not (self.relapse and self.relapse.search(message))


@dataclass(frozen=True)
class Topic:
    id: str
    patterns: tuple[re.Pattern[str], ...]
    ask: str
    examples: tuple[str, ...] = ()  # questions on it, compared by meaning
    # Matched in the whole message, background included ("I'm pregnant. Can I have it?"); other
    # topics only in what a message of several sentences asks (see ``not_covered_topic``).
    anywhere: bool = False


@dataclass
class SafetyRules:
    flags: tuple[RedFlag, ...]
    topics: tuple[Topic, ...]
    default_ask: str
    threshold: float
    negation_openers: tuple[str, ...]
    negation_near: re.Pattern[str]
    reassuring: re.Pattern[str] = re.compile(r"(?!)")
    resolved: re.Pattern[str] = re.compile(r"(?!)")
    # Everyday statements that are not red flags: a clause nearer one of these than to any flag's
    # example is not raised by meaning (patterns still apply).
    everyday: tuple[str, ...] = ()
    margin: float = 0.0
    example_vectors: np.ndarray | None = None  # one row per example (flags' first, then everyday), unit length
    example_owner: tuple[int, ...] = ()  # the flag's index for each row; -1 for an everyday example


@dataclass(frozen=True)
class Finding:
    flag: RedFlag
    clause: str
    how: str  # "pattern" or "similar to: <example>"


@dataclass(frozen=True)
class Triage:
    findings: tuple[Finding, ...] = ()

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
    flags = [_read_flag(flags_path, number, entry) for number, entry in enumerate(data.get("flags") or [], start=1)]
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
        examples = entry.get("examples") or []
        if not isinstance(examples, list) or not all(isinstance(e, str) and e.strip() for e in examples):
            raise CorpusError(f"{topics_path}: {where}: 'examples' must be a list of questions")
        topics.append(
            Topic(
                str(entry["id"]),
                _compile(topics_path, where, entry.get("patterns") or []),
                str(entry["ask"]),
                tuple(e.strip() for e in examples),
                anywhere=bool(entry.get("anywhere", False)),
            )
        )
    return SafetyRules(
        flags=tuple(flags),
        topics=tuple(topics),
        default_ask=str(topics_data.get("default_ask") or "your physical therapist or doctor"),
        threshold=float(data.get("similarity_threshold", 0.72)),
        negation_openers=tuple(normalise(o) for o in negation.get("openers") or []),
        reassuring=_word_pattern(negation.get("reassuring") or []),
        resolved=_word_pattern(negation.get("resolved") or []),
        everyday=tuple(str(e) for e in data.get("everyday") or []),
        margin=float(data.get("everyday_margin", 0.0)),
        negation_near=re.compile(rf"\b({'|'.join(near)})\b[\w\s']{{0,12}}$" if near else r"(?!)", re.IGNORECASE),
    )


def _read_flag(path: Path, number: int, entry: object) -> RedFlag:
    """One flag of the red-flags file, checked; errors name the file and the flag."""
    where = f"flag {number} ({entry.get('id', 'no id') if isinstance(entry, dict) else entry!r})"
    if not isinstance(entry, dict):
        raise CorpusError(f"{path}: {where}: expected id, tier, title, message, patterns, examples")
    missing = [k for k in ("id", "tier", "title", "message", "examples") if not entry.get(k)]
    if missing:
        raise CorpusError(f"{path}: {where}: missing {', '.join(missing)}")
    if entry["tier"] not in TIERS:
        raise CorpusError(f"{path}: {where}: tier {entry['tier']!r} is not one of {', '.join(TIERS)}")
    return RedFlag(
        id=str(entry["id"]),
        tier=str(entry["tier"]),
        title=str(entry["title"]),
        message=" ".join(str(entry["message"]).split()),
        patterns=_compile(path, where, entry.get("patterns") or []),
        examples=tuple(str(e) for e in entry["examples"]),
        threshold=float(entry["threshold"]) if entry.get("threshold") is not None else None,
        resolvable=bool(entry.get("resolvable")),
        lasting=_words_if(entry.get("lasting")),
        recovered=_words_if(entry.get("recovered")),
        relapse=_words_if(entry.get("relapse")),
        together=_pairs(path, where, entry.get("together") or []),
    )


def _pairs(path: Path, where: str, entries: object) -> tuple[tuple[re.Pattern[str], re.Pattern[str]], ...]:
    """``together`` entries: each a mapping of two patterns, ``means`` and ``intent``."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) and {"means", "intent"} <= set(e) for e in entries):
        raise CorpusError(f"{path}: {where}: 'together' must be a list of {{means: pattern, intent: pattern}}")
    pairs = []
    for entry in entries:
        means, intent = _compile(path, where, [entry["means"], entry["intent"]])
        pairs.append((means, intent))
    return tuple(pairs)


def _words_if(words: list[str] | None) -> re.Pattern[str] | None:
    return _word_pattern(words) if words else None


def _word_pattern(words: list[str]) -> re.Pattern[str]:
    if not words:
        return re.compile(r"(?!)")
    return re.compile(rf"\b({'|'.join(re.escape(normalise(w)) for w in words)})\b")


def example_texts(rules: SafetyRules) -> tuple[list[str], tuple[int, ...]]:
    """Every flag's examples, then the everyday statements, with the flag each belongs to (-1: none)."""
    texts, owner = [], []
    for index, flag in enumerate(rules.flags):
        for example in flag.examples:
            texts.append(example)
            owner.append(index)
    texts += rules.everyday
    owner += [-1] * len(rules.everyday)
    return texts, tuple(owner)


def embed_examples(rules: SafetyRules, vectors: Callable[[list[str]], Mapping[str, np.ndarray]]) -> SafetyRules:
    """``rules`` with every example embedded: triage then compares clauses by meaning as well as by pattern."""
    texts, owner = example_texts(rules)
    kept = vectors(texts)
    stacked = np.stack([kept[t] for t in texts]) if texts else None
    return replace(rules, example_vectors=stacked, example_owner=owner)


def normalise(text: str) -> str:
    """Lower case, compatible characters, straight apostrophes, single spaces."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return _SPACES.sub(" ", text).strip().casefold()


def clauses(text: str) -> list[str]:
    return [c.strip(" -'\"") for c in _CLAUSE_BREAK.split(normalise(text)) if c.strip(" -'\"")]


def negation_opener(clause: str, rules: SafetyRules) -> int:
    """The length of the negation the clause opens with ("no", "there's no"), or 0."""
    return max((len(o) for o in rules.negation_openers if clause == o or clause.startswith(o + " ")), default=0)


def is_negated(clause: str, rules: SafetyRules) -> bool:
    return bool(negation_opener(clause, rules))


def match_patterns(clause: str, flag: RedFlag, rules: SafetyRules, opener: int = 0) -> bool:
    """Whether a pattern of ``flag`` matches, not cancelled by a negation just before it. In a clause
    that opens with a negation (``opener`` characters), only a match that takes the negation in
    counts: "no feeling down there" or "there's no reason to go on" says the symptom, "no numbness"
    denies it."""
    for pattern in flag.patterns:
        for match in pattern.finditer(clause):
            if opener and match.start() >= opener:
                continue
            if not rules.negation_near.search(clause[: match.start()]):
                return True
    return False


def clauses_to_embed(text: str, rules: SafetyRules) -> list[str]:
    """The clauses worth comparing by meaning: affirmed ones of a few words or more, at most
    ``MAX_EMBEDDED_CLAUSES`` of them."""
    return bounded([c for c in clauses(text) if comparable(c, rules)])


def bounded(items: list[str], limit: int = MAX_EMBEDDED_CLAUSES) -> list[str]:
    """The first and last ``limit // 2`` items when there are more than ``limit``."""
    unique = list(dict.fromkeys(items))
    return unique if len(unique) <= limit else unique[: limit // 2] + unique[-(limit - limit // 2) :]


def comparable(clause: str, rules: SafetyRules) -> bool:
    """Affirmed and long enough to compare by meaning. A clause with a reassuring word ("fine",
    "better") is compared too, but can raise only the crisis tier: "they'd all be better off" is
    no reassurance."""
    return not is_negated(clause, rules) and len(clause.split()) >= MIN_CLAUSE_WORDS


def triage(
    text: str,
    rules: SafetyRules,
    clause_vectors: Callable[[list[str]], np.ndarray] | None = None,
    whole: str | None = None,
) -> Triage:
    """Find red flags in ``text``. ``clause_vectors`` embeds clauses; without it only patterns run.

    ``whole`` (the message, or the part of it that is embedded anyway) is compared by meaning as
    well, when every clause of the message is affirmed: a symptom told across several clauses ("a
    stabbing pain under my collarbone, breathing fast, since the needles") reads as one."""
    findings: list[Finding] = []
    found: set[str] = set()
    every = clauses(text)
    message = " ".join(every)
    openers = [negation_opener(c, rules) for c in every]
    gone = [passed(every, i, rules) for i in range(len(every))]
    affirmed = [(c, gone[i]) for i, c in enumerate(every) if not openers[i]]
    for index, clause in enumerate(every):
        for flag in rules.flags:
            if flag.id in found or (gone[index] and flag.cleared_by_passing(clause, message)):
                continue
            if match_patterns(clause, flag, rules, openers[index]):
                findings.append(Finding(flag, clause, "pattern"))
                found.add(flag.id)
    for flag in rules.flags:
        if flag.together and flag.id not in found and not (flag.recovered and flag.cleared_by_passing("", message)):
            holding = together(flag, every, gone, openers, rules)
            if holding:
                findings.append(Finding(flag, holding, "pattern, with the rest of the message"))
                found.add(flag.id)
    candidates = bounded([c for c, _ in affirmed if comparable(c, rules)])
    if whole and len(every) > 1 and all(comparable(c, rules) or len(c.split()) < MIN_CLAUSE_WORDS for c in every):
        calm = any(over for _, over in affirmed) or any(rules.reassuring.search(c) for c in every)
        if not calm and not any(_HEDGED.search(c) for c in every):
            candidates.append(whole)
    if clause_vectors is not None and rules.example_vectors is None and any(f.examples for f in rules.flags):
        raise ValueError("triage by meaning needs the rules' examples embedded first: see embed_examples")
    if clause_vectors is not None and rules.example_vectors is not None and candidates:
        resolved = {c for c, over in affirmed if over}
        similarity = clause_vectors(candidates) @ rules.example_vectors.T
        owner = np.asarray(rules.example_owner)
        for row, clause in enumerate(candidates):
            finding = nearest_flag(clause, similarity[row], owner, rules)
            if finding and finding.flag.tier != "crisis" and rules.reassuring.search(clause):
                continue
            if (
                finding
                and finding.flag.id not in found
                and not (clause in resolved and finding.flag.cleared_by_passing(clause, message))
            ):
                findings.append(finding)
                found.add(finding.flag.id)
    return Triage(tuple(findings))


def together(flag: RedFlag, every: list[str], gone: list[bool], openers: list[int], rules: SafetyRules) -> str | None:
    """The clause holding the first half of one of ``flag``'s pairs whose second half is anywhere in the
    message, unless that clause is negated or said to have passed."""
    message = " ".join(every)
    for means, intent in flag.together:
        if not intent.search(message):
            continue
        for index, clause in enumerate(every):
            if gone[index] and flag.cleared_by_passing(clause, message):
                continue
            for match in means.finditer(clause):
                if openers[index] and match.start() >= openers[index]:
                    continue
                if not rules.negation_near.search(clause[: match.start()]):
                    return clause
    return None


_LONG_AGO = re.compile(r"(\w+ ){0,3}(years?|decades?|winters?|summers?) ago|(at|when i was) \d{1,2}")
_PRESENT = re.compile(r"\b(now|today|again|still|since|currently|at the moment|this week|tonight|lately)\b")
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_PAST = re.compile(
    rf"\b(last (year|summer|winter|spring|autumn)|\d+ months ago|(a few|a couple of|several|many) months ago"
    rf"|(back )?in ({_MONTHS})|back in the (spring|summer|autumn|winter)|last month|a while (back|ago)"
    r"|the (year|winter|summer|spring|autumn) before last)\b"
)
_IN_YEAR = re.compile(r"\bin (19|20)(\d\d)\b")


def passed(every: list[str], index: int, rules: SafetyRules) -> bool:
    """Whether the clause, or the one right after it, says the symptom has passed ("but it's gone now"),
    one of the two clauses before is only a time long past ("last time, two years ago, I felt breathless")
    and the clause says nothing of now, or the clause names a time long gone and nothing of now ("back in
    January", "last year") or a year at least two years gone ("a car accident back in 2015")."""
    if any(rules.resolved.search(c) for c in every[index : index + 2]):
        return True
    before = every[max(0, index - 2) : index]  # "at 15, before I came out, I hurt myself"
    if any(_LONG_AGO.fullmatch(c) for c in before) and not _PRESENT.search(every[index]):
        return True
    if _PAST.search(every[index]) and not _PRESENT.search(every[index]):  # "slipped on ice back in January"
        return True
    this_year = datetime.date.today().year
    return any(int(a + b) <= this_year - 2 for a, b in _IN_YEAR.findall(every[index]))


def nearest_flag(clause: str, similarity: np.ndarray, owner: np.ndarray, rules: SafetyRules) -> Finding | None:
    """The flag whose example the clause is nearest in meaning, if near enough and nearer than any
    everyday statement."""
    is_flag = owner >= 0
    best = int(np.argmax(np.where(is_flag, similarity, -2.0)))
    everyday = float(np.max(similarity[~is_flag])) if (~is_flag).any() else -1.0
    flag = rules.flags[owner[best]]
    needed = flag.threshold if flag.threshold is not None else rules.threshold
    if similarity[best] < needed or similarity[best] < everyday + rules.margin:
        return None
    example = flag.examples[best - int(np.argmax(owner == owner[best]))]
    return Finding(flag, clause, f"similar to: {example} ({similarity[best]:.2f}; everyday {everyday:.2f})")


def not_covered_examples(rules: SafetyRules) -> list[str]:
    """Every question known not to be answered by the articles, for comparison by meaning."""
    return [example for topic in rules.topics for example in topic.examples]


def not_covered_topic(text: str, rules: SafetyRules) -> Topic | None:
    """The topic a pattern finds in what the message asks. In a message of several sentences that is
    its questions: a story's background ("I take codeine", "it's £55 a session") is not what it asks,
    except for a topic marked ``anywhere``."""
    asked = set(clauses(" ".join(asking_sentences(text))))
    for clause in clauses(text):
        for topic in rules.topics:
            if (topic.anywhere or clause in asked) and any(p.search(clause) for p in topic.patterns):
                return topic
    return None


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def message_sentences(text: str) -> list[str]:
    """A patient's message cut into sentences (after ".", "!" or "?" and a space)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def asking_sentences(text: str) -> list[str]:
    """The sentences that ask something: those ending with "?", or the whole text when it is one
    sentence or asks nothing with a question mark."""
    sentences = message_sentences(text)
    asking = [s for s in sentences if s.endswith("?")]
    return asking if len(sentences) > 1 and asking else [text]
