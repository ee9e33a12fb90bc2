"""The assistant: triage, retrieval and answer composition behind one ``ask``."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import wording
from ..articles.corpus import default_safety, load_corpus
from ..articles.store import IndexStore
from ..config import Settings
from ..embeddings import Embedder
from ..errors import AssistantError, StoreUnavailable
from . import compose, ranking
from .compose import NOT_COVERED, REJECTED, UNAVAILABLE, URGENT, Reply
from .retrieval import Hit, IndexReader, Reader, Snapshot
from .trace import FlagFound, Searched, Trace, Weighed
from .triage import (
    SafetyRules,
    Topic,
    clauses_to_embed,
    embed_examples,
    load_rules,
    not_covered_examples,
    not_covered_topic,
    triage,
)

log = logging.getLogger("assistant")
_REFERS_BACK = re.compile(r"\b(it|its|it's|this|that|these|those|they|them|there|the same|more|else)\b", re.I)
CHUNK_CACHE = 5_000  # chunks whose sentences and phrasings are kept ready

History = Sequence[Any]


def scalar_text(text: str) -> str:
    """``text`` without lone surrogates (a JSON "\\ud800" escape makes one), which the tokenizer refuses."""
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


@dataclass
class Services:
    """Everything ``ask`` depends on, built once per process."""

    settings: Settings
    embedder: Embedder
    store: IndexStore
    rules: SafetyRules


def user_turns(history: History) -> list[str]:
    """The patient's earlier messages: plain strings, Gradio message dicts or (user, bot) pairs."""
    turns = []
    for item in history or ():
        if isinstance(item, str):
            turns.append(item)
        elif isinstance(item, dict):
            if item.get("role") == "user" and isinstance(item.get("content"), str):
                turns.append(item["content"])
        elif isinstance(item, list | tuple) and item and isinstance(item[0], str):
            turns.append(item[0])
    return turns


class Assistant:
    def __init__(self, services: Services, reader: Reader | None = None) -> None:
        self.services = services
        self.settings = services.settings
        self.reader = reader or IndexReader(
            services.store, services.embedder.model_id, in_memory_chunks=services.settings.in_memory_chunks
        )
        self._spelling: tuple[int, ranking.Speller | None] = (-1, None)
        self._chunks: dict[tuple[int, str], tuple[list[ranking.Sentence], np.ndarray, list[np.ndarray]]] = {}
        self._examples: dict[tuple[str, ...], np.ndarray] = {}
        self._safety: dict[str, str] | None = None
        s = self.settings
        self.thresholds = ranking.Thresholds(
            answer=s.answer_similarity,
            suggest=s.suggest_similarity,
            margin=s.not_covered_margin,
            lead=s.lead_similarity,
            lead_margin=s.lead_margin,
            window=s.quote_window,
            own_offset=s.own_offset,
            unphrased_offset=s.unphrased_offset,
            max_quotes=s.max_quotes,
        )

    # -- start-up -----------------------------------------------------------------------------

    def warm(self) -> None:
        """Load the model, embed the triage examples and open the index before the first patient."""
        self.services.rules = embed_examples(self.services.rules, self._vectors)
        snapshot = self.reader.snapshot()  # no index, or one without safety text: refuse to start
        self._safety = snapshot.manifest.safety_for()
        title = snapshot.manifest.title_of(snapshot.manifest.default_source)
        vector = self.services.embedder.encode_one(title)
        hits = snapshot.search(vector, self.settings.candidates)
        self._rank(hits, vector, vector[None, :], snapshot)  # embeds the sentences, phrasings and examples now

    def reload_rules(self) -> None:
        """Read corpus/safety again (staff published a change): red flags and not-covered examples."""
        self.services.rules = embed_examples(load_rules(self.settings.corpus_dir), self._vectors)
        self._examples, self._spelling = {}, (-1, None)

    def nearest_topic(self, vector: np.ndarray, topics: tuple[str, ...]) -> Topic | None:
        """The not-covered topic with the example nearest ``vector`` (a focused question), when it is near
        enough (``suggest_similarity``) for that topic's "who to ask" to fit."""
        examples = self._not_covered_vectors(topics)
        if not len(examples):
            return None
        owners: dict[str, Topic] = {}  # in the order _not_covered_vectors stacks them (equal texts once)
        for topic in self.services.rules.topics:
            for example in topic.examples:
                owners.setdefault(ranking.focus_kept(example, topics), topic)
        similarity = examples @ vector
        best = int(np.argmax(similarity))
        return list(owners.values())[best] if similarity[best] >= self.settings.suggest_similarity else None

    def _corpus_safety(self) -> dict[str, str]:
        return default_safety(load_corpus(self.settings.corpus_dir))[1]

    def last_safety(self) -> dict[str, str]:
        if self._safety is None:
            self._safety = self._corpus_safety()
        return self._safety

    # -- the answer path ----------------------------------------------------------------------

    def ask(self, question: object, history: History = ()) -> Reply:
        started = time.perf_counter()
        text = scalar_text(question) if isinstance(question, str) else ""
        reply = self._answer(text, history)
        reply.trace.seconds = round(time.perf_counter() - started, 4)
        return reply

    def _answer(self, text: str, history: History) -> Reply:
        """Triage, then rank the article's sentences, then compose: the safety text always closes it."""
        if not text.strip():
            return compose.finish(Reply(text, REJECTED, "", body=wording.EMPTY), self.last_safety())
        read = self._read(text, history)
        found = triage(text, self.services.rules, read.clause_vectors(), read.question)
        alert = compose.alert_text(found.flags())
        trace = Trace(
            triage=[FlagFound(f.flag.id, f.flag.tier, f.clause, f.how) for f in found.findings],
            retrieval_query=read.focused,
            context=read.context,
        )
        if read.too_long:  # refused, but triaged by pattern first, so a red flag is never missed
            body = wording.too_long(len(text), self.settings.max_question_chars)
            reply = Reply(text, URGENT if alert else REJECTED, "", alert=alert, body=body, trace=trace)
            return compose.finish(reply, self.last_safety())
        try:
            snapshot, hits = self._search(read, trace)
        except AssistantError as exc:
            log.error("answer unavailable: %s", exc)
            self.reader.forget()
            trace.error = str(exc)
            reply = Reply(
                text, URGENT if alert else UNAVAILABLE, "", alert=alert, body=wording.UNAVAILABLE, trace=trace
            )
            return compose.finish(reply, self.last_safety())
        self._safety = snapshot.manifest.safety_for()
        return self._compose(read, alert, snapshot, hits, trace)

    def _read(self, text: str, history: History) -> Reading:
        """The message in every form the answer path compares, each embedded once, in one batch."""
        settings = self.settings
        too_long = len(text) > settings.max_question_chars
        question, context = self._retrieval_query(text, history)
        question = tail(question, settings.embedded_chars)  # a long message is read for the question it ends on
        snapshot, failure = self._snapshot()
        topics = snapshot.topics if snapshot else ()
        mend = self._speller(snapshot).mend if snapshot else str
        context_mended = mend(context) if context else None
        read = Reading(
            text=text,
            question=question,
            context=context,
            focused=ranking.focus(mend(question), topics),
            asked=tuple(ranking.focus(mend(q), topics) for q in ranking.questions(question)),  # what a story asks
            focused_context=ranking.focus(context_mended, topics) if context_mended else None,
            # A follow-up is also read together with what came before, as one message would be.
            told=ranking.focus(mend(tail(f"{context} {question}", settings.embedded_chars)), topics)
            if context
            else None,
            too_long=too_long,
            snapshot=snapshot,
            failure=failure,
            context_weight=settings.context_weight,
        )
        if too_long:  # patterns only: nothing of it is embedded
            return read
        # A long message reads the same with its topic said as "it": one long text embedded, not two.
        story = len(question) > settings.story_chars
        forms = [read.focused if story else question, read.focused, *read.asked]
        clauses = clauses_to_embed(text, self.services.rules)
        read.vectors = self._encode_unique([*forms, *clauses, *[c for c in (context, read.focused_context) if c]])
        if story:
            read.vectors[question] = read.vectors[read.focused]
        return read

    def _search(self, read: Reading, trace: Trace) -> tuple[Snapshot, list[Hit]]:
        """The version to answer from and the chunks nearest the question; ``AssistantError`` if unreachable."""
        snapshot = read.snapshot
        if snapshot is None:
            raise read.failure or StoreUnavailable("no index")
        # A question naming an article's subject ("trigger points") is answered from that article,
        # not from whichever of thousands of others happens to sit nearest.
        trace.scope = snapshot.scope(f"{read.context or ''} {read.question}")
        hits = snapshot.search(read.query(), self.settings.candidates, trace.scope)
        trace.hits = [Searched(h.section, h.article, round(h.score, 4), h.chunk_id) for h in hits]
        return snapshot, hits

    def _compose(self, read: Reading, alert: str, snapshot: Snapshot, hits: list[Hit], trace: Trace) -> Reply:
        """Quotes when a sentence answers; else "not covered", with who to ask and questions it does answer."""
        rules, manifest = self.services.rules, snapshot.manifest
        topic = not_covered_topic(read.text, rules)
        focused_query = read.focused_query()
        questions = len(read.asked)
        ranked = self._rank(hits, read.query(), focused_query, snapshot, questions)
        if read.told and not ranked.quotes:  # a follow-up that says little on its own: read with what came before
            told_vector = self._encode_unique([read.told])[read.told]
            ranked = self._rank(hits, read.query(), np.vstack([focused_query, told_vector]), snapshot, questions)
        trace.topic = topic.id if topic else None
        trace.ranking = ranked.reason
        trace.not_covered_similarity = round(ranked.not_covered_similarity, 4)
        trace.candidates = [
            Weighed(c.sentence.text, c.hit.section, round(c.score, 4), c.matched) for c in ranked.candidates[:8]
        ]
        quotes = [] if topic else [compose.quote_of(c) for c in ranked.quotes]
        suggestions = [] if quotes or alert or topic else list(ranked.suggestions)
        if quotes:
            status, body = compose.ANSWERED, compose.quoted_body(quotes)
        else:
            status = NOT_COVERED
            asking = topic or self.nearest_topic(focused_query[questions - 1], snapshot.topics)  # who to ask, as taught
            title = manifest.title_of(manifest.default_source)
            # With an alert, the alert says what to do; an article passage would only distract.
            body = "" if alert else compose.not_covered_body(title, asking, rules.default_ask, suggestions)
        reply = Reply(
            read.text,
            URGENT if alert else status,
            "",
            sources=compose.sources_of(hits, quotes),
            quotes=quotes,
            suggestions=suggestions,
            index_version=manifest.version,
            alert=alert,
            body=body,
            trace=trace,
        )
        return compose.finish(reply, manifest.safety_for(quotes[0].source if quotes else None))

    def _snapshot(self) -> tuple[Snapshot | None, AssistantError | None]:
        try:
            return self.reader.snapshot(), None
        except AssistantError as exc:
            return None, exc

    def _rank(
        self, hits: list[Hit], query: np.ndarray, focused: np.ndarray, snapshot: Snapshot, asking: int = 1
    ) -> ranking.Ranking:
        """Score every quotable sentence of ``hits`` and decide: answer, or refuse with suggestions.

        Phrasings are compared with the question as ``focused`` (its topic said as "it"; one row per
        reading); a sentence's own wording with the question as asked. The not-covered examples are
        compared with the first ``asking`` rows, the questions: a message asking several things is
        answered when one of them is not nearer a question the article does not answer."""
        prepared = [self._prepared(hit, snapshot) for hit in hits]
        found = [sentence for sentences, _, _ in prepared for sentence in sentences]
        width = len(query)
        own = np.concatenate([vectors for _, vectors, _ in prepared]) if found else np.zeros((0, width), np.float32)
        phrasings = [matrix for _, _, matrices in prepared for matrix in matrices]
        limits = self.thresholds
        candidates = ranking.score(query, focused, found, own, phrasings, limits.own_offset, limits.unphrased_offset)
        examples = self._not_covered_vectors(snapshot.topics)
        not_covered = float(np.min(np.max(focused[:asking] @ examples.T, axis=1))) if len(examples) else -1.0
        return ranking.decide(candidates, not_covered, self.thresholds)

    def _prepared(self, hit: Hit, snapshot: Snapshot) -> tuple[list[ranking.Sentence], np.ndarray, list[np.ndarray]]:
        """A chunk's quotable sentences, their vectors and their phrasings' vectors, worked out once per
        chunk (ids are content hashes) and version (phrasings may change without the text)."""
        key = (snapshot.manifest.version, hit.chunk_id)
        kept = self._chunks.get(key)
        if kept is not None:
            return kept
        found = ranking.sentences_of([hit], snapshot.phrasings)
        asked = [tuple(ranking.focus_kept(q, snapshot.topics) for q in s.phrasings) for s in found]
        vectors = self._vectors([s.text for s in found] + [q for qs in asked for q in qs])
        width = self.services.embedder.dimension if not found else len(vectors[found[0].text])
        own = np.stack([vectors[s.text] for s in found]) if found else np.zeros((0, width), np.float32)
        matrices = [np.stack([vectors[q] for q in qs]) if qs else np.zeros((0, width), np.float32) for qs in asked]
        prepared = (found, own, matrices)
        if len(self._chunks) >= CHUNK_CACHE:
            self._chunks.clear()
        self._chunks[key] = prepared
        return prepared

    def _speller(self, snapshot: Snapshot) -> ranking.Speller:
        """Typos are mended toward the words of this version's articles, phrasings and not-covered examples."""
        version, speller = self._spelling
        if version != snapshot.manifest.version or speller is None:
            texts = [q for keyed in snapshot.phrasings.values() for qs in keyed.values() for q in qs]
            texts += [a.get("title", "") for a in snapshot.manifest.articles.values()]
            texts += [key for keyed in snapshot.phrasings.values() for key in keyed]
            texts += not_covered_examples(self.services.rules)
            speller = ranking.Speller(texts, self.services.embedder.words())
            self._spelling = (snapshot.manifest.version, speller)
        return speller

    def _not_covered_vectors(self, topics: tuple[str, ...]) -> np.ndarray:
        kept = self._examples.get(topics)
        if kept is None:
            examples = [ranking.focus_kept(e, topics) for e in not_covered_examples(self.services.rules)]
            kept = np.stack(list(self._vectors(examples).values())) if examples else np.zeros((0, 1))
            self._examples = {topics: kept}
        return kept

    def unavailable(self, question: object, error: BaseException) -> Reply:
        """The reply when something unexpected failed: calm, and still with the safety text."""
        text = question if isinstance(question, str) else ""
        trace = Trace(error=f"{type(error).__name__}: {error}")
        return compose.finish(Reply(text, UNAVAILABLE, "", body=wording.FAILED, trace=trace), self.last_safety())

    def _retrieval_query(self, text: str, history: History) -> tuple[str, str | None]:
        """The question, and for a short follow-up ("does it hurt?") the previous question as context."""
        earlier = user_turns(history)[-self.settings.history_turns :] if self.settings.history_turns else []
        if earlier and (len(text.split()) <= self.settings.follow_up_words or _REFERS_BACK.search(text)):
            return text, " ".join(t[: self.settings.max_question_chars] for t in earlier)
        return text, None

    def _vectors(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Vectors for ``texts``: sentences and phrasings recur across questions, so each is embedded once."""
        kept = self.services.embedder.encode_kept([scalar_text(t) for t in texts])
        return {t: kept[scalar_text(t)] for t in texts}

    def _encode_unique(self, texts: list[str]) -> dict[str, np.ndarray]:
        unique = list(dict.fromkeys(texts))
        if not unique:
            return {}
        return dict(zip(unique, self.services.embedder.encode([scalar_text(t) for t in unique]), strict=True))


def tail(text: str, limit: int) -> str:
    """The last ``limit`` characters of ``text``, starting at a word."""
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    return cut.split(" ", 1)[1] if " " in cut else cut


def with_context(vector: np.ndarray, context: np.ndarray | None, weight: float) -> np.ndarray:
    """A follow-up leans on the previous question without being drowned by it."""
    if context is None:
        return vector
    combined = vector + weight * context
    return combined / np.linalg.norm(combined)


@dataclass
class Reading:
    """One message as the answer path reads it: its forms, and their vectors once embedded."""

    text: str  # as the patient wrote it
    question: str  # its last ``embedded_chars``
    context: str | None  # the earlier message a short follow-up leans on
    focused: str  # the question with typos mended and the topic said as "it"
    asked: tuple[str, ...]  # what the message asks (a long story may ask several things), focused
    focused_context: str | None
    told: str | None  # context and question read as one message, focused
    too_long: bool
    snapshot: Snapshot | None
    failure: AssistantError | None
    context_weight: float
    vectors: dict[str, np.ndarray] = field(default_factory=dict)

    def clause_vectors(self) -> Callable[[list[str]], np.ndarray] | None:
        """Triage's clauses, embedded in the same batch as the question; none for a message too long."""
        if not self.vectors:
            return None
        return lambda clauses: np.stack([self.vectors[c] for c in clauses])

    def query(self) -> np.ndarray:
        """The question as retrieval searches with it."""
        return with_context(self.vectors[self.question], self.vectors.get(self.context or ""), self.context_weight)

    def focused_query(self) -> np.ndarray:
        """What the message asks, one row a question, then the whole message, focused, each leaning on the
        focused context. The question rows are what the not-covered examples are compared with."""
        context = self.vectors.get(self.focused_context or "")
        rows = [*self.asked, self.focused]
        return np.stack([with_context(self.vectors[row], context, self.context_weight) for row in rows])
