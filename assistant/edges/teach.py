"""Staff teach the assistant: a patient's question becomes a phrasing of the sentence that answers
it (``corpus/phrasings/<article>.yaml``), or an example of a not-covered topic
(``corpus/safety/not-covered.yaml``).

Files are edited as text, one line added where the list already is, so ``git diff`` shows exactly
what was taught; comments and order stay. Nothing changes for patients until the next ingest. A
question that would collide with a red flag, name an unknown section or repeat what a file
already says is refused with the reason, and no file is touched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..answering import ranking
from ..answering.retrieval import Hit
from ..answering.triage import (
    NOT_COVERED_FILE,
    SafetyRules,
    clauses_to_embed,
    embed_examples,
    load_rules,
    nearest_flag,
    not_covered_topic,
    triage,
)
from ..articles.chunking import Chunker
from ..articles.corpus import Article, article_sentences, load_corpus, phrasings_path, read_phrasings
from ..config import Settings
from ..embeddings import Embedder
from ..errors import TeachRefused
from ..wiring import chunker

KEY_WORDS = 8  # a new key starts as the sentence's first words, lengthened until only that sentence holds it


@dataclass(frozen=True)
class Taught:
    """What one teach action changed: the file, and a line for the person who asked."""

    path: Path
    message: str
    detail: dict[str, str]


@dataclass
class Teacher:
    """Checks and writes teach actions against one corpus folder."""

    corpus_dir: Path
    embedder: Embedder
    chunker: Chunker  # sections as the index cuts them
    own_offset: float = 0.1
    unphrased_offset: float = -0.1
    max_question_chars: int = 2000

    @classmethod
    def from_settings(cls, settings: Settings, embedder: Embedder | None = None) -> Teacher:
        return cls(
            settings.corpus_dir,
            embedder or Embedder(settings.embed_model),
            chunker(settings),
            settings.own_offset,
            settings.unphrased_offset,
            settings.max_question_chars,
        )

    # -- reading --------------------------------------------------------------------------------

    def rules(self) -> SafetyRules:
        # The same examples recur on every action: encode_kept embeds each once.
        return embed_examples(load_rules(self.corpus_dir), self.embedder.encode_kept)

    def sections(self, articles: Sequence[Article]) -> dict[tuple[str, str], list[Hit]]:
        """(article source, section path) -> its chunks, as retrieval would hand them to ranking."""
        found: dict[tuple[str, str], list[Hit]] = {}
        for article in articles:
            for chunk in self.chunker.split(article):
                hit = Hit(chunk.chunk_id, chunk.article, chunk.source, chunk.section, chunk.text, 0.0, chunk.position)
                found.setdefault((chunk.source, chunk.section), []).append(hit)
        return found

    # -- checks ---------------------------------------------------------------------------------

    def clean(self, question: str) -> str:
        text = " ".join((question or "").split())
        if not text:
            raise TeachRefused("the question is empty: give the patient's question in quotes")
        if len(text) > self.max_question_chars:
            raise TeachRefused(
                f"the question is {len(text):,} characters; the chat accepts at most {self.max_question_chars:,}"
            )
        return text

    def red_flag_reasons(self, question: str, rules: SafetyRules) -> list[str]:
        """Why ``question`` would collide with a red flag: raised by triage (pattern or meaning), or as a
        whole as near a flag's example as triage needs to raise it."""
        clauses = clauses_to_embed(question, rules)
        vectors = dict(zip(clauses, self.embedder.encode(clauses), strict=True)) if clauses else {}
        found = triage(question, rules, (lambda cs: np.stack([vectors[c] for c in cs])) if vectors else None)
        reasons = [f"triage raises red flag '{f.flag.id}' ({f.how} in {f.clause!r})" for f in found.findings]
        if rules.example_vectors is not None and not found.findings:
            # The whole question too, as triage compares a clause: a short one it would not embed.
            similarity = rules.example_vectors @ self.embedder.encode_one(question)
            near = nearest_flag(question, similarity, np.asarray(rules.example_owner), rules)
            if near is not None:
                reasons.append(f"too close to red flag '{near.flag.id}' ({near.how})")
        return reasons

    def _refuse_red_flag(self, question: str, rules: SafetyRules) -> None:
        reasons = self.red_flag_reasons(question, rules)
        if reasons:
            raise TeachRefused(
                f"{question!r} collides with a red flag, so it cannot be taught (red flags are answered with "
                "urgent advice first): " + "; ".join(reasons)
            )

    # -- attach a phrasing -----------------------------------------------------------------------

    def attach(self, question: str, section: str, article: str | None = None) -> Taught:
        """Add ``question`` as a phrasing of the sentence of ``section`` that answers it best."""
        question = self.clean(question)
        articles = load_corpus(self.corpus_dir)
        chunks = self.sections(articles)
        source, path = self._find_section(section, article, articles, chunks)
        rules = self.rules()
        self._refuse_red_flag(question, rules)
        topic = not_covered_topic(question, rules)
        if topic:
            raise TeachRefused(
                f"{question!r} matches a pattern of the not-covered topic '{topic.id}' in "
                f"{self.corpus_dir / NOT_COVERED_FILE}, so it would still be refused; change that topic first"
            )
        if _folded(question) in {_folded(e) for t in rules.topics for e in t.examples}:
            raise TeachRefused(
                f"{question!r} is listed as a not-covered example; remove it from {NOT_COVERED_FILE} first"
            )
        the_article = next(a for a in articles if a.source == source)
        for key, questions in the_article.phrasings:
            if _folded(question) in {_folded(q) for q in questions}:
                raise TeachRefused(f"{question!r} is already a phrasing of the sentence with key {key!r}")
        own = self.best_sentence(question, chunks[(source, path)], the_article)
        key = self._key_for(own, the_article)
        file = phrasings_path(self.corpus_dir, source)
        add_phrasing(file, source, key, question)
        check = dict(read_phrasings(file, source))
        if question not in check.get(key, ()):
            raise TeachRefused(
                f"{file}: the phrasing was written but does not read back; check the file"
            )  # pragma: no cover
        return Taught(
            file,
            f"Attached {question!r} to {the_article.title} > {path}: the sentence {own!r} (key {key!r}) in {file}. "
            "It takes effect when the index is next published (python ingest.py).",
            {"action": "attach", "question": question, "article": source, "section": path, "key": key},
        )

    def _find_section(
        self, section: str, article: str | None, articles: Sequence[Article], chunks: dict[tuple[str, str], list[Hit]]
    ) -> tuple[str, str]:
        wanted = " ".join((section or "").split()).casefold()
        chosen = [
            a.source
            for a in articles
            if article is None
            or article.casefold() in {a.title.casefold(), a.source.casefold(), Path(a.source).stem.casefold()}
        ]
        if not chosen:
            raise TeachRefused(
                f"no article {article!r}; the articles are: " + "; ".join(f"{a.title} ({a.source})" for a in articles)
            )
        matches = [
            (source, path)
            for (source, path) in chunks
            if source in chosen and wanted in {path.casefold(), path.split(" > ")[-1].casefold()}
        ]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            listed = "\n".join(f"  {path}" for source, path in chunks if source in chosen)
            raise TeachRefused(f"no section {section!r}; the sections are:\n{listed}")
        raise TeachRefused(
            f"section {section!r} is in more than one article ({', '.join(s for s, _ in matches)}): name one with --article"
        )

    def best_sentence(self, question: str, hits: list[Hit], article: Article) -> str:
        """The section's sentence ranking would quote first for ``question`` (its own wording, not the quote)."""
        keyed = dict(article.phrasings)
        topics = tuple(str(t) for t in (article.info().topic or ()))
        found: list[ranking.Sentence] = []
        owns: list[str] = []
        for hit in hits:
            for text, own in ranking.with_antecedents(hit.text):
                if ranking.quotable(own, hit.section):
                    questions = tuple(q for key, qs in keyed.items() if key in own for q in qs)
                    found.append(ranking.Sentence(text, hit, questions, phrased=bool(keyed)))
                    owns.append(own)
        if not found:
            raise TeachRefused(f"section {hits[0].section!r} has no sentence that can be quoted")
        focused = ranking.focus(question, topics)
        asked = [[ranking.focus_kept(q, topics) for q in s.phrasings] for s in found]
        texts = list(dict.fromkeys([question, focused, *(s.text for s in found), *(q for qs in asked for q in qs)]))
        vectors = dict(zip(texts, self.embedder.encode(texts), strict=True))
        width = len(vectors[question])
        own_vectors = np.stack([vectors[s.text] for s in found])
        phrasing_vectors = [
            np.stack([vectors[q] for q in qs]) if qs else np.zeros((0, width), np.float32) for qs in asked
        ]
        scored = ranking.score(
            vectors[question],
            vectors[focused][None, :],
            found,
            own_vectors,
            phrasing_vectors,
            self.own_offset,
            self.unphrased_offset,
        )
        return owns[next(i for i, s in enumerate(found) if s is scored[0].sentence)]

    @staticmethod
    def _key_for(own: str, article: Article) -> str:
        """The key of the sentence's existing entry, or a new phrase that only this sentence holds."""
        for key, _questions in article.phrasings:
            if key in own:
                return key
        every = article_sentences(article)
        words = own.rstrip(".!?").split()
        for length in range(min(KEY_WORDS, len(words)), len(words) + 1):
            phrase = " ".join(words[:length])
            if words[length - 1].casefold() in _DANGLING and length < len(words):
                continue  # "… dry for a" reads better as "… dry for a day"
            if sum(phrase in s for s in every) == 1:
                return phrase
        raise TeachRefused(f"the sentence {own!r} appears more than once in {article.source}; no key can single it out")

    # -- mark not covered -------------------------------------------------------------------------

    def not_covered(self, question: str, ask: str | None = None) -> Taught:
        """Add ``question`` as an example of a not-covered topic: the one whose ``ask`` is ``ask`` (a new
        topic when none is), or without ``ask`` the topic whose examples it is nearest in meaning."""
        question = self.clean(question)
        ask = " ".join((ask or "").split()) or None
        articles = load_corpus(self.corpus_dir)
        rules = self.rules()
        self._refuse_red_flag(question, rules)
        for article in articles:
            for key, questions in article.phrasings:
                if _folded(question) in {_folded(q) for q in questions}:
                    raise TeachRefused(
                        f"{question!r} is a phrasing of the sentence with key {key!r} in "
                        f"{phrasings_path(self.corpus_dir, article.source)}: remove it there first"
                    )
        if _folded(question) in {_folded(e) for t in rules.topics for e in t.examples}:
            raise TeachRefused(f"{question!r} is already a not-covered example")
        file = self.corpus_dir / NOT_COVERED_FILE
        if ask is not None:
            topic = next((t.id for t in rules.topics if t.ask.casefold() == ask.casefold()), None)
        else:
            topic = self._nearest_topic(question, rules)
        topic_id = add_not_covered(file, question, topic, ask, taken={t.id for t in rules.topics})
        load_rules(self.corpus_dir)  # the file still reads as rules
        return Taught(
            file,
            f"Marked {question!r} not covered (topic '{topic_id}') in {file}. "
            "It takes effect when the index is next published (python ingest.py).",
            {"action": "not-covered", "question": question, "topic": topic_id, "ask": ask or ""},
        )

    def _nearest_topic(self, question: str, rules: SafetyRules) -> str | None:
        with_examples = [t for t in rules.topics if t.examples]
        if not with_examples:
            return None
        texts = [e for t in with_examples for e in t.examples]
        owners = [t.id for t in with_examples for _ in t.examples]
        kept = self.embedder.encode_kept(texts)
        similarity = np.stack([kept[t] for t in texts]) @ self.embedder.encode_one(question)
        return owners[int(np.argmax(similarity))]


_DANGLING = frozenset("a an the of to and or for in on at by with is are".split())


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold().rstrip("?.! ")


def yaml_item(text: str) -> str:
    """``text`` as a YAML block-list item (quoted only when YAML needs it)."""
    return yaml.safe_dump([text], allow_unicode=True, width=1_000_000, default_flow_style=False).rstrip("\n")


def _item_indent(lines: list[str], start: int, end: int) -> tuple[int, str] | None:
    """The last ``- item`` line of the list starting after ``lines[start]``, and its indentation."""
    last = None
    for index in range(start + 1, end):
        match = re.match(r"^(\s*)- ", lines[index])
        if match:
            last = (index, match.group(1))
        elif lines[index].strip() and not lines[index].lstrip().startswith("#") and last is not None:
            break
    return last


def add_phrasing(file: Path, article_source: str, key: str, question: str) -> None:
    """Append ``question`` to the entry for ``key`` (a new entry at the end when there is none)."""
    text = file.read_text(encoding="utf-8") if file.exists() else f"article: {article_source}\nsentences:\n"
    lines = text.splitlines()
    entries = [i for i, line in enumerate(lines) if re.match(r"^\s*- key:", line)]
    for number, start in enumerate(entries):
        if yaml.safe_load(lines[start].split("key:", 1)[1]) != key:
            continue
        end = entries[number + 1] if number + 1 < len(entries) else len(lines)
        opener = next(i for i in range(start, end) if re.match(r"^\s*(- )?questions:", lines[i]))
        flow = lines[opener].split("questions:", 1)[1].strip()
        if flow:  # questions: [a, b]: the list is rewritten on its line, in the same style
            current = yaml.safe_load(flow) or []
            head = lines[opener].split("questions:", 1)[0]
            lines[opener] = (
                head
                + "questions: "
                + yaml.safe_dump(
                    [*current, question], default_flow_style=True, allow_unicode=True, width=1_000_000
                ).strip()
            )
        else:
            last = _item_indent(lines, opener, end)
            if last is None:
                indent = re.match(r"^(\s*)", lines[opener]).group(1) + "  "  # type: ignore[union-attr]
                lines.insert(opener + 1, indent + yaml_item(question))
            else:
                lines.insert(last[0] + 1, last[1] + yaml_item(question))
        break
    else:
        indent = re.match(r"^(\s*)", lines[entries[0]]).group(1) if entries else "  "  # type: ignore[union-attr]
        if lines and lines[-1].strip():
            lines.append("")
        lines.append(f"{indent}- key: {yaml.safe_dump(key, default_style=chr(34), width=1_000_000).splitlines()[0]}")
        lines.append(f"{indent}  questions:")
        lines.append(f"{indent}    {yaml_item(question)}")
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _topic_slug(ask: str, taken: set[str]) -> str:
    base = "ask-" + "-".join(re.findall(r"[a-z0-9]+", ask.casefold())[:5])
    slug, number = base, 2
    while slug in taken:
        slug, number = f"{base}-{number}", number + 1
    return slug


def add_not_covered(file: Path, question: str, topic: str | None, ask: str | None, taken: set[str]) -> str:
    """Append ``question`` to ``topic``'s examples (a new topic asking ``ask`` when ``topic`` is None)."""
    lines = file.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"^\s*- id:", line)]
    for number, start in enumerate(starts):
        if topic is None or str(yaml.safe_load(lines[start].split("id:", 1)[1])) != topic:
            continue
        end = starts[number + 1] if number + 1 < len(starts) else len(lines)
        indent = re.match(r"^(\s*)", lines[start]).group(1) + "  "  # type: ignore[union-attr]
        opener = next((i for i in range(start, end) if lines[i].startswith(indent + "examples:")), None)
        if opener is None:  # a topic with patterns only: its first example
            last = max(i for i in range(start, end) if lines[i].strip())
            lines[last + 1 : last + 1] = [f"{indent}examples:", f"{indent}  {yaml_item(question)}"]
        else:
            item = _item_indent(lines, opener, end)
            at, item_indent = item if item else (opener, indent + "  ")
            lines.insert(at + 1, item_indent + yaml_item(question))
        file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return topic
    new_id = _topic_slug(ask or "default", taken)
    indent = re.match(r"^(\s*)", lines[starts[0]]).group(1) if starts else "  "  # type: ignore[union-attr]
    while lines and not lines[-1].strip():
        lines.pop()
    lines += [
        f"{indent}- id: {new_id}",
        f"{indent}  ask: {yaml.safe_dump(ask or 'your physical therapist or doctor', width=1_000_000).splitlines()[0]}",
        f"{indent}  examples:",
        f"{indent}    {yaml_item(question)}",
    ]
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return new_id
