"""Words as the index counts them: stemmed terms, subject-phrase look-ups ("trigger points" in a
question scopes it to the article that declares them) and the per-version term counts ingest keeps."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import lru_cache

_WORD = re.compile(r"[a-z]+")
STOPWORDS = frozenset(
    """a about after again all also am an and any are as at be been before being both but by can
    could did do does doing don down during each few for from further get got had has have having he
    her here his how i if in into is it its just me might more most must my no nor not now of off on
    once only or other our out over own same she should so some such than that the their them then
    there these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours whats im ive dont cant""".split()
)
_SUFFIXES = ("ings", "ing", "ies", "es", "s", "ed", "ly")


def stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


@lru_cache(maxsize=65_536)  # passages recur across questions; their terms never change
def terms(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 2)


def stems(text: str) -> str:
    """The text as a space-padded sequence of stems, for phrase look-ups."""
    return " " + " ".join(stem(w) for w in _WORD.findall(text.lower())) + " "


def mentions(text: str, phrases: Iterable[str]) -> bool:
    """Whether ``text`` contains any of ``phrases``, compared stem by stem."""
    padded = stems(text)
    return any(f" {stems(p).strip()} " in padded for p in phrases if p.strip())


def count_terms(texts: Iterable[str]) -> Counter[str]:
    """For each term, how many of ``texts`` hold it."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(terms(text))
    return counts


def common_terms(counts: Mapping[str, int]) -> dict[str, int]:
    """The terms held by two or more chunks: a term in one chunk scores as one in none."""
    return {term: n for term, n in counts.items() if n >= 2}
