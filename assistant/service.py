"""The assistant: triage, retrieval and answer composition behind one ``ask``."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import answer as compose
from .answer import NOT_COVERED, REJECTED, UNAVAILABLE, URGENT, Reply
from .config import Settings
from .corpus import default_safety, load_corpus
from .embeddings import Embedder
from .errors import AssistantError
from .lexical import Lexicon, mentions, terms
from .retrieval import Hit, IndexReader, PinnedReader
from .store import IndexStore, open_store
from .triage import SafetyRules, clauses_to_embed, example_texts, load_rules, not_covered_topic, triage

log = logging.getLogger("assistant")
_REFERS_BACK = re.compile(r"\b(it|its|it's|this|that|these|those|they|them|there|the same|more|else)\b", re.I)
FOLLOW_UP_WORDS = 8
CONTEXT_WEIGHT = 0.5
SENTENCE_CACHE_LIMIT = 20_000

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


def build_services(settings: Settings, embedder: Embedder | None = None) -> Services:
    rules = load_rules(settings.corpus_dir)
    return Services(
        settings=settings,
        embedder=embedder or Embedder(settings.embed_model),
        store=open_store(settings.index_dir, settings.chroma_url),
        rules=rules,
    )


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
    def __init__(self, services: Services, reader: IndexReader | PinnedReader | None = None) -> None:
        self.services = services
        self.settings = services.settings
        self.reader = reader or IndexReader(services.store, services.embedder.model_id)
        self._sentences: dict[str, tuple[list[str], np.ndarray]] = {}
        self._sentence_lock = threading.Lock()
        self._safety: dict[str, str] | None = None

    # -- start-up -----------------------------------------------------------------------------

    def warm(self) -> None:
        """Load the model, embed the triage examples and open the index before the first patient."""
        texts, owner = example_texts(self.services.rules)
        self.services.rules.example_vectors = self.services.embedder.encode(texts)
        self.services.rules.example_owner = owner
        snapshot = self.reader.snapshot()  # no index, or one without safety text: refuse to start
        self._safety = snapshot.manifest.safety_for()
        title = snapshot.manifest.title_of(snapshot.manifest.default_source)
        snapshot.search(self.services.embedder.encode_one(title), 1)

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
        reply.details["seconds"] = round(time.perf_counter() - started, 4)
        return reply

    def _answer(self, text: str, history: History) -> Reply:
        settings, rules = self.settings, self.services.rules
        if not text.strip():
            reply = Reply(text, REJECTED, "", body="Please type a question about dry needling for back pain.")
            return compose.finish(reply, self.last_safety())
        too_long = len(text) > settings.max_question_chars
        retrieval_query, context = self._retrieval_query(text, history)
        triage_clauses = [] if too_long else clauses_to_embed(text, rules)
        if retrieval_query == text and len(triage_clauses) == 1:
            retrieval_query = triage_clauses[0]  # one clause: one embedding serves both
        # Long messages are refused, but still triaged (by pattern) so a red flag is never missed.
        to_embed = [] if too_long else [retrieval_query, *triage_clauses, *([context] if context else [])]
        vectors = self._encode_unique(to_embed)
        found = triage(text, rules, (lambda cs: np.stack([vectors[c] for c in cs])) if vectors else None)
        alert = compose.alert_text(found.flags())
        query_vector = None
        if vectors:
            query_vector = vectors[retrieval_query]
            if context:  # a follow-up leans on the previous question without being drowned by it
                query_vector = query_vector + CONTEXT_WEIGHT * vectors[context]
                query_vector = query_vector / np.linalg.norm(query_vector)
        details: dict[str, object] = {
            "triage": [{"flag": f.flag.id, "tier": f.flag.tier, "clause": f.clause, "how": f.how} for f in found.findings],
            "retrieval_query": retrieval_query,
            "context": context,
        }
        if too_long:
            body = (
                f"Your message is {len(text):,} characters long; please keep it under "
                f"{settings.max_question_chars:,} characters and ask one question at a time."
            )
            return compose.finish(Reply(text, URGENT if alert else REJECTED, "", alert=alert, body=body, details=details), self.last_safety())
        asked = f"{context or ''} {retrieval_query}"
        try:
            snapshot = self.reader.snapshot()
            # A question naming an article's subject ("trigger points") is answered from that article,
            # not from whichever of thousands of others happens to sit nearest.
            details["scope"] = scope = snapshot.scope(asked)
            hits = snapshot.search(query_vector, settings.candidates, scope)
            lexicon = snapshot.lexicon_for(scope)
        except AssistantError as exc:
            log.error("answer unavailable: %s", exc)
            self.reader.forget()
            body = (
                "The assistant is temporarily unavailable, so I can't look this up in the article "
                "right now. Please try again in a few minutes."
            )
            details["error"] = str(exc)
            return compose.finish(Reply(text, URGENT if alert else UNAVAILABLE, "", alert=alert, body=body, details=details), self.last_safety())
        manifest = snapshot.manifest
        self._safety = manifest.safety_for()
        query_terms = terms(retrieval_query)
        hits = self._rescore(hits, query_vector, lexicon, query_terms)
        details["hits"] = [{"section": h.section, "article": h.article, "score": round(h.score, 4), "chunk_id": h.chunk_id} for h in hits]
        topic = not_covered_topic(text, rules)
        subject = manifest.articles.get(hits[0].source, {}).get("subject", []) if hits else []
        on_subject = mentions(asked, subject)
        needed = settings.min_similarity if on_subject else max(settings.min_similarity, settings.min_similarity_off_subject)
        details["on_subject"] = on_subject
        quotes = [] if topic else compose.select_quotes(
            hits,
            query_vector,
            self._sentence_vectors,
            lambda sentence: settings.lexical_weight * lexicon.coverage(query_terms, terms(sentence)),
            min_similarity=needed,
            min_sentence_similarity=settings.min_sentence_similarity,
            max_quotes=settings.max_quotes,
        )
        details["topic"] = topic.id if topic else None
        if quotes:
            status, body = compose.ANSWERED, compose.quoted_body(quotes)
        else:
            status = NOT_COVERED
            body = compose.not_covered_body(manifest.title_of(manifest.default_source), topic, rules.default_ask)
            if alert:
                body = ""  # the alert says what to do; an article passage would only distract
        reply = Reply(
            text,
            URGENT if alert else status,
            "",
            sources=compose.sources_of(hits, quotes, needed),
            index_version=manifest.version,
            alert=alert,
            body=body,
            details=details,
        )
        return compose.finish(reply, manifest.safety_for(quotes[0].source if quotes else None))

    def unavailable(self, question: object, error: BaseException) -> Reply:
        """The reply when something unexpected failed: calm, and still with the safety text."""
        text = question if isinstance(question, str) else ""
        body = "Sorry, something went wrong on our side and I can't answer right now. Please try again in a few minutes."
        reply = Reply(text, UNAVAILABLE, "", body=body, details={"error": f"{type(error).__name__}: {error}"})
        return compose.finish(reply, self.last_safety())

    def _retrieval_query(self, text: str, history: History) -> tuple[str, str | None]:
        """The question, and for a short follow-up ("does it hurt?") the previous question as context."""
        earlier = user_turns(history)[-self.settings.history_turns :] if self.settings.history_turns else []
        if earlier and (len(text.split()) <= FOLLOW_UP_WORDS or _REFERS_BACK.search(text)):
            return text, " ".join(t[: self.settings.max_question_chars] for t in earlier)
        return text, None

    def _rescore(self, hits: list[Hit], query: np.ndarray, lexicon: Lexicon, query_terms: frozenset[str]) -> list[Hit]:
        """A chunk is as relevant as its best sentence: a long list must not dilute the one tip asked about."""
        self._cache_sentences(hits)
        rescored = []
        for hit in hits:
            _texts, vectors = self._sentence_vectors(hit)
            dense = max(hit.dense, float(np.max(vectors @ query))) if len(vectors) else hit.dense
            bonus = self.settings.lexical_weight * lexicon.coverage(query_terms, hit.terms)
            rescored.append(replace(hit, score=dense + bonus, dense=dense))
        rescored.sort(key=lambda h: h.score, reverse=True)
        return rescored[: self.settings.top_k]

    def _encode_unique(self, texts: list[str]) -> dict[str, np.ndarray]:
        unique = list(dict.fromkeys(texts))
        if not unique:
            return {}
        return dict(zip(unique, self.services.embedder.encode([scalar_text(t) for t in unique]), strict=True))

    def _sentence_vectors(self, hit: Hit) -> tuple[list[str], np.ndarray]:
        cached = self._sentences.get(hit.chunk_id)
        if cached is None:
            self._cache_sentences([hit])
            cached = self._sentences[hit.chunk_id]
        return cached

    def _cache_sentences(self, hits: Sequence[Hit]) -> None:
        """Embed the sentences of chunks not seen before, in one batch; chunk ids are content hashes."""
        missing = {h.chunk_id: compose.sentences(h.text) or [h.text] for h in hits if h.chunk_id not in self._sentences}
        if not missing:
            return
        vectors = self.services.embedder.encode([s for texts in missing.values() for s in texts])
        with self._sentence_lock:
            if len(self._sentences) + len(missing) > SENTENCE_CACHE_LIMIT:
                self._sentences.clear()
            start = 0
            for chunk_id, texts in missing.items():
                self._sentences[chunk_id] = (texts, vectors[start : start + len(texts)])
                start += len(texts)


def create_assistant(settings: Settings) -> Assistant:
    assistant = Assistant(build_services(settings))
    assistant.warm()
    return assistant
