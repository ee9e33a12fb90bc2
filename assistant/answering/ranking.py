"""Which of the article's sentences answers a question, and how sure that is.

Each quotable sentence is scored by meaning two ways, and keeps the better:
- against the questions it is known to answer (its *phrasings*, kept beside the article):
  question to question, where the embedding model separates best;
- against its own wording, lowered by ``own_offset``, since a question and its answer are
  never as alike as two wordings of one question. An article without phrasings works this way.

A question is answered only when its best sentence clears ``answer`` and sits clearly above
the nearest question known *not* to be answered (``not_covered`` examples). When the best is
close but not clear, the reply is an honest "not covered" with questions the article does
answer, as suggestions. Pure functions over arrays: no model, no store.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..articles.corpus import sentences
from .retrieval import Hit
from .triage import message_sentences

# Sentences that introduce an article rather than say anything: never quoted.
_NOT_AN_ANSWER = re.compile(
    r"^(learn (about|more)|read (on|more)|this (article|page|guide|leaflet)|in this (article|page|guide)|"
    r"expert insights|see also|click)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Thresholds:
    answer: float  # the best sentence's score needed to answer at all
    suggest: float  # below ``answer`` but at least this: "not covered", with suggestions
    margin: float  # how far the best must sit above the nearest not-covered example
    # A best sentence below ``answer`` but at least ``lead`` still answers when it leads the nearest
    # not-covered example by ``lead_margin``: clearly the article's answer, if said in other words.
    window: float  # further quotes score within this of the best
    own_offset: float  # subtracted from a sentence's similarity to the question itself
    unphrased_offset: float = -0.1  # the same for a sentence of an article that has no phrasings
    max_quotes: int = 3
    max_suggestions: int = 3
    lead: float = 1.0
    lead_margin: float = 1.0


@dataclass(frozen=True)
class Sentence:
    """A quotable sentence of a retrieved chunk, with the questions it is known to answer."""

    text: str
    hit: Hit
    phrasings: tuple[str, ...] = ()
    phrased: bool = True  # its article has phrasings: its own wording is only a fallback


@dataclass(frozen=True)
class Candidate:
    sentence: Sentence
    score: float
    matched: str  # the phrasing it matched, or "" when its own wording scored higher

    @property
    def hit(self) -> Hit:
        return self.sentence.hit


@dataclass(frozen=True)
class Ranking:
    """The outcome: ``quotes`` best first when answered; otherwise ``suggestions`` may help."""

    candidates: tuple[Candidate, ...]  # every sentence, best first
    not_covered_similarity: float
    quotes: tuple[Candidate, ...] = ()
    suggestions: tuple[str, ...] = ()
    reason: str = ""


def quotable(text: str, section: str) -> bool:
    """A sentence worth quoting: not an article's introduction of itself, not a bare heading."""
    return len(text.split()) >= 4 and not _NOT_AN_ANSWER.match(text) and text.strip() != section.split(" > ")[-1]


def sentences_of(hits: Sequence[Hit], phrasings: dict[str, dict[str, list[str]]]) -> list[Sentence]:
    """The quotable sentences of ``hits``, each with the phrasings whose key phrase it holds.

    ``phrasings`` maps an article's source to {key phrase: questions}.
    """
    found = []
    for hit in hits:
        keyed = phrasings.get(hit.source) or {}
        heading = hit.section.split(" > ")[-1].strip()
        for text, own in with_antecedents(hit.text):
            if not quotable(own, hit.section):
                continue
            if keyed:
                asked = tuple(q for key, questions in keyed.items() if key in own for q in questions)
            else:  # an article without phrasings: a section headed by a question is asked by it
                asked = (heading,) if heading.endswith("?") else ()
            found.append(Sentence(text, hit, asked, phrased=bool(keyed)))
    return found


_ANAPHORIC = re.compile(r"^(this|these|those|that|it|they|such)\b", re.IGNORECASE)


def with_antecedents(passage: str) -> list[tuple[str, str]]:
    """The passage's sentences as (quote, sentence): a sentence that leans on the one before
    ("These effects are mild") is quoted with it, exactly as the passage has them, so every quote
    stands on its own."""
    parts = sentences(passage)
    spans, position = [], 0
    for part in parts:
        start = passage.find(part, position)
        spans.append((start, start + len(part)))
        position = start + len(part)
    quoted = []
    for index, part in enumerate(parts):
        if index and _ANAPHORIC.match(part) and spans[index][0] >= 0 and spans[index - 1][0] >= 0:
            between = passage[spans[index - 1][1] : spans[index][0]]
            if between.strip() == "":  # plain prose: the previous sentence sits right before it
                quoted.append((passage[spans[index - 1][0] : spans[index][1]], part))
                continue
        quoted.append((part, part))
    return quoted


def score(
    query: np.ndarray,
    focused: np.ndarray,
    found: Sequence[Sentence],
    own_vectors: np.ndarray,
    phrasing_vectors: Sequence[np.ndarray],
    own_offset: float,
    unphrased_offset: float | None = None,
) -> list[Candidate]:
    """Each sentence's score, best first: ``query`` against its own wording, ``focused`` (the question
    with its topic said as "it"; one row per reading of it) against its phrasings,
    ``phrasing_vectors[i]`` being sentence i's. A sentence of an article without phrasings is
    scored on its own wording with ``unphrased_offset`` (``own_offset`` if None)."""
    scored = []
    own = own_vectors @ query if len(found) else np.zeros(0)
    for index, sentence in enumerate(found):
        offset = own_offset if sentence.phrased or unphrased_offset is None else unphrased_offset
        best, matched = float(own[index]) - offset, ""
        vectors = phrasing_vectors[index]
        if len(vectors):
            similarity = np.atleast_2d(vectors @ np.atleast_2d(focused).T).max(axis=1)
            top = int(np.argmax(similarity))
            if similarity[top] > best:
                best, matched = float(similarity[top]), sentence.phrasings[top]
        scored.append(Candidate(sentence, best, matched))
    scored.sort(key=lambda c: c.score, reverse=True)
    return scored


def decide(candidates: Sequence[Candidate], not_covered_similarity: float, limits: Thresholds) -> Ranking:
    """Answer with the clear best sentences, or refuse honestly, offering close questions."""
    ranked = tuple(candidates)
    if not ranked:
        return Ranking(ranked, not_covered_similarity, reason="nothing retrieved")
    best = ranked[0].score
    clear = best >= limits.answer and best - not_covered_similarity >= limits.margin
    leading = best >= limits.lead and best - not_covered_similarity >= limits.lead_margin
    if clear or leading:
        quotes = [ranked[0]]
        floor = limits.answer if clear else limits.lead
        for candidate in ranked[1:]:
            if len(quotes) >= limits.max_quotes or candidate.score < max(floor, best - limits.window):
                break
            if candidate.sentence.text not in {q.sentence.text for q in quotes}:
                quotes.append(candidate)
        return Ranking(ranked, not_covered_similarity, quotes=tuple(quotes), reason="answered")
    if best >= limits.answer:
        reason = f"closer to a question the article does not answer ({not_covered_similarity:.2f})"
    else:
        reason = f"no sentence is a clear answer (best {best:.2f}, needs {limits.answer:.2f})"
    suggestions = suggest(ranked, limits) if best >= limits.suggest else ()
    return Ranking(ranked, not_covered_similarity, suggestions=suggestions, reason=reason)


def suggest(ranked: Sequence[Candidate], limits: Thresholds) -> tuple[str, ...]:
    """Up to ``max_suggestions`` questions the article does answer, from the nearest distinct sentences."""
    chosen: list[str] = []
    for candidate in ranked:
        if len(chosen) >= limits.max_suggestions:
            break
        if candidate.score < limits.suggest:
            break
        question = candidate.matched or (candidate.sentence.phrasings[0] if candidate.sentence.phrasings else "")
        if question and question.casefold() not in {c.casefold() for c in chosen}:
            chosen.append(question)
    return tuple(chosen)


def questions(text: str, most: int = 3) -> list[str]:
    """What a message asks, said directly, last ``most`` at most: the sentences that end with "?" in a
    message of several ("… my back is sore. Will it help?"), else those introduced as questions, else
    the last. "I was wondering whether it helps" asks "it helps"; "Before I book, what…" asks "what…"."""
    parts = message_sentences(text)
    if len(parts) < 2:
        return [direct(text)]
    asking = [p for p in parts if p.endswith("?")] or [p for p in parts if _FRAME.match(p)] or parts[-1:]
    return [direct(p) for p in asking[-most:]]


def last_question(text: str) -> str:
    """The last thing a message asks (``questions``)."""
    return questions(text)[-1]


_ASKS = r"(what|how|why|when|where|who|which|will|would|can|could|should|is|are|do|does|did|am|has|have|any)\b"
# How a question is introduced rather than asked: the words carry nothing of what is asked.
_OPENING = r"^((hi|hello|hey|ok|okay|so|well|also|and|but|quick question)\b[,!.:]?\s+)*"
_FRAME = re.compile(
    _OPENING + r"((i\s*(was|am|'m|’m)\s+)?(just\s+)?(wondering|curious)|i\s*(would|'d|’d)\s+(like|love)\s+to\s+know"
    r"|i\s+(want|need)\s+to\s+know|what\s+i\s+(really\s+)?(want|need)\s+to\s+know\s+is"
    r"|(can|could|would)\s+you\s+(please\s+)?(tell|explain\s+to|let)\s+me(\s+know)?|please\s+tell\s+me"
    r"|do\s+you\s+know|my\s+question\s+is)\b[\s,:]*((about|on)\s+)?((whether|if)\b\s*)?",
    re.IGNORECASE,
)
_GREETED = re.compile(_OPENING + "(?=" + _ASKS + ")", re.IGNORECASE)
# A question after a clause that only sets the scene: "Before I take time off, what difference would it make?"
_LEAD_CLAUSE = re.compile(
    r"^(before|after|since|because|as|now that|given that|although|while)\b[^,?]{0,80},\s*(?=" + _ASKS + ")",
    re.IGNORECASE,
)


def direct(question: str) -> str:
    """``question`` without the words that introduce it, when something is left to ask."""
    plain = _LEAD_CLAUSE.sub("", _FRAME.sub("", _GREETED.sub("", question, count=1), count=1), count=1)
    return plain if len(plain.split()) >= 2 else question


_TOKEN = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*|[^A-Za-z]+")


def distance(word: str, target: str) -> int:
    """Edits between two words: insert, delete, substitute, or swap two neighbours ("saef", "safe")."""
    rows = [list(range(len(target) + 1))]
    for i, a in enumerate(word, start=1):
        current = [i]
        for j, b in enumerate(target, start=1):
            edits = min(rows[-1][j] + 1, current[j - 1] + 1, rows[-1][j - 1] + (a != b))
            if i > 1 and j > 1 and a == target[j - 2] and word[i - 2] == b:
                edits = min(edits, rows[-2][j - 2] + 1)
            current.append(edits)
        rows = [rows[-1], current]
    return rows[-1][-1]


def allowed_edits(target: str, two_from: int = 7) -> int:
    """Edits a typo of ``target`` may hold: none in short words, two only in long ones."""
    return 0 if len(target) < 4 else 1 if len(target) < two_from else 2


def within(word: str, target: str) -> bool:
    """Whether ``word`` is ``target`` or a likely typo of it (edits allowed grow with length)."""
    word, target = word.casefold(), target.casefold()
    if word == target:
        return True
    if not word or word[0] != target[0]:  # a typo rarely changes the first letter
        return False
    allowed = allowed_edits(target)
    return bool(allowed) and abs(len(word) - len(target)) <= allowed and distance(word, target) <= allowed


def focus(text: str, topics: Sequence[str]) -> str:
    """``text`` with the chat's topic ("dry needling", typos too) said as "it".

    Every question in this chat is about its topic, and the topic's words, present in nearly every
    question and passage, would otherwise outweigh what the question actually asks.
    """
    if not topics:
        return text
    tokens = _TOKEN.findall(text)
    words = [i for i, t in enumerate(tokens) if t[0].isalpha()]
    out = list(tokens)
    for topic in topics:
        parts = topic.split()
        for start, index in enumerate(words):
            span = words[start : start + len(parts)]
            if within(tokens[index].replace("-", ""), "".join(parts)):  # "dry-needling", "drynedling"
                out[index] = "it"
            elif len(span) == len(parts) and all(within(tokens[i], p) for i, p in zip(span, parts, strict=True)):
                out[span[0]] = "it"
                for i in span[1:]:
                    out[i] = ""
    return re.sub(r"\s+(?=[?.!,])", "", re.sub(r"\s{2,}", " ", "".join(out))).strip()


def slip(typed: str, word: str) -> int:
    """How likely a typing slip turns ``word`` into ``typed``: 0 a letter dropped or two swapped,
    1 a letter mistyped, 2 a letter added."""
    if len(word) > len(typed) or (len(word) == len(typed) and sorted(word) == sorted(typed)):
        return 0
    return 1 if len(word) == len(typed) else 2


class Speller:
    """Mends likely typos ("side efects", "practioner", "saef") toward the words the articles, their
    phrasings and the not-covered examples use, so a misspelt question still finds its phrasing.
    Only words of four letters or more, with the same first letter, and never a word that is
    already a word: known here, or one of ``words`` (the embedding model's vocabulary), so
    "cousin" is not made "causing" nor "feeling" "falling"."""

    def __init__(self, texts: Sequence[str], words: Iterable[str] = ()) -> None:
        self.uses = Counter(w for text in texts for w in _WORD.findall(text.casefold()))
        self.known = set(self.uses)
        self.real = self.known | {w.casefold() for w in words}
        self._by_initial: dict[str, list[str]] = {}
        for word in sorted(self.known):
            if len(word) >= 4:
                self._by_initial.setdefault(word[0], []).append(word)
        self._mended: dict[str, str] = {}

    def word(self, word: str) -> str:
        lower = word.casefold()
        if len(lower) < 4 or lower in self.real:
            return word
        mended = self._mended.get(lower)
        if mended is None:
            # A letter dropped or two swapped is likelier than one mistyped, and that than one added; among
            # equals, the word the texts use most ("waht": "what", not "want"; "ther": "there", not "then").
            near = [
                (distance(lower, w), slip(lower, w), -self.uses[w], w)
                for w in self._by_initial.get(lower[0], ())
                if abs(len(w) - len(lower)) <= allowed_edits(w, MEND_TWO_FROM)
            ]
            near = [entry for entry in near if entry[0] <= allowed_edits(entry[-1], MEND_TWO_FROM)]
            mended = min(near)[-1] if near else lower
            if len(self._mended) < 10_000:
                self._mended[lower] = mended
        return mended

    def mend(self, text: str) -> str:
        text = _SHORTHAND_WORD.sub(lambda m: SHORTHAND[m.group(0).casefold()], text)
        return _WORD.sub(lambda m: self.word(m.group(0)), text)


# Text-speak a patient may type, said in full so it reads like the phrasings ("shud i b4" -> "should i before").
SHORTHAND = {
    "u": "you",
    "ur": "your",
    "r": "are",
    "b4": "before",
    "shud": "should",
    "shld": "should",
    "wud": "would",
    "cud": "could",
    "wat": "what",
    "wot": "what",
    "wht": "what",
    "wats": "what's",
    "abt": "about",
    "wen": "when",
    "coz": "because",
    "cos": "because",
    "cuz": "because",
    "bc": "because",
    "pls": "please",
    "plz": "please",
    "ppl": "people",
    "tho": "though",
    "thx": "thanks",
    "wanna": "want to",
    "gonna": "going to",
    "dont": "don't",
    "cant": "can't",
    "doesnt": "doesn't",
    "isnt": "isn't",
    "arent": "aren't",
    "didnt": "didn't",
    "wasnt": "wasn't",
    "werent": "weren't",
    "havent": "haven't",
    "hasnt": "hasn't",
    "wouldnt": "wouldn't",
    "couldnt": "couldn't",
    "shouldnt": "shouldn't",
    "im": "I'm",
    "ive": "I've",
    "hv": "have",
    "rn": "right now",
    "idk": "I don't know",
    "dr": "doctor",
    "2day": "today",
    "2moro": "tomorrow",
    "neone": "anyone",
    "sum1": "someone",
}
_SHORTHAND_WORD = re.compile(
    r"(?<![\w'])(" + "|".join(sorted(SHORTHAND, key=len, reverse=True)) + r")(?![\w']|\.\w)", re.I
)


_WORD = re.compile(r"[A-Za-z]+")
MEND_TWO_FROM = 8  # a mended word of seven letters may differ in one ("codeine" is not "combine")


@lru_cache(maxsize=20_000)
def focus_kept(text: str, topics: tuple[str, ...]) -> str:
    """``focus`` for texts that recur on every question (phrasings, examples), worked out once."""
    return focus(text, topics)
