"""Articles as files: reading, front matter, headings, and the checks a maintainer relies on."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import CorpusError

ARTICLE_SUFFIXES = (".md", ".txt")
SEEK_HELP = "When to Seek Professional Help"
DISCLAIMER = "Disclaimer"
SAFETY_SECTIONS = (SEEK_HELP, DISCLAIMER)
MAX_ARTICLE_BYTES = 2_000_000
PHRASINGS_DIR = "phrasings"

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")


@dataclass(frozen=True)
class Section:
    level: int
    title: str
    line: int  # 1-based line of the heading in the file
    body: str


@dataclass(frozen=True)
class ArticleInfo:
    """What ingest and the index need to know of an article besides its chunks."""

    source: str
    title: str
    primary: bool = False
    safety: dict[str, str] | None = None
    subject: tuple[str, ...] = ()
    # What the article is about ("dry needling"): in this chat every question is, so ranking treats it as said.
    topic: tuple[str, ...] = ()
    # Questions each sentence answers, in patients' words: (key phrase of the sentence, questions).
    phrasings: tuple[tuple[str, tuple[str, ...]], ...] = ()
    reviewed: str | None = None  # the front matter's date of the clinic's last review


@dataclass(frozen=True)
class Article:
    source: str  # path relative to the corpus folder, with forward slashes
    title: str
    body: str  # Markdown without the front matter
    meta: dict[str, object] = field(default_factory=dict)
    sections: tuple[Section, ...] = ()
    phrasings: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def section_text(self, title: str) -> str | None:
        for section in self.sections:
            if section.title.casefold() == title.casefold():
                return section.body
        return None

    @property
    def safety(self) -> dict[str, str] | None:
        """The article's own safety texts, when it has both."""
        texts = {name: self.section_text(name) for name in SAFETY_SECTIONS}
        if all(texts.values()):
            return {name: text for name, text in texts.items() if text}
        return None

    def info(self) -> ArticleInfo:
        subject = self.meta.get("subject") or []
        return ArticleInfo(
            source=self.source,
            title=self.title,
            primary=bool(self.meta.get("primary")),
            safety=self.safety,
            subject=tuple(sorted(str(phrase) for phrase in subject)) if isinstance(subject, list) else (str(subject),),
            topic=_phrases(self.meta.get("topic")),
            phrasings=self.phrasings,
            reviewed=str(self.meta["reviewed"]) if self.meta.get("reviewed") else None,
        )


def _phrases(value: object) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else (str(value),)


def phrasings_path(corpus_dir: Path, source: str) -> Path:
    """Where the questions an article answers are kept: ``phrasings/<article path>.yaml``."""
    return corpus_dir / PHRASINGS_DIR / Path(source).with_suffix(".yaml")


def read_phrasings(path: Path, article: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The file's (key phrase, questions) pairs; none when the article has no such file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ()
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: not valid UTF-8 YAML: {exc}") from None
    entries = data.get("sentences") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise CorpusError(f"{path}: expected 'sentences:', a list of entries with 'key' and 'questions'")
    pairs = []
    for number, entry in enumerate(entries, start=1):
        key = entry.get("key") if isinstance(entry, dict) else None
        questions = entry.get("questions") if isinstance(entry, dict) else None
        if not isinstance(key, str) or not key.strip():
            raise CorpusError(
                f"{path}: entry {number}: 'key' must be a phrase copied from one of {article}'s sentences"
            )
        if (
            not isinstance(questions, list)
            or not questions
            or not all(isinstance(q, str) and q.strip() for q in questions)
        ):
            raise CorpusError(f"{path}: entry {number} ({key!r}): 'questions' must be a non-empty list of questions")
        pairs.append((key, tuple(q.strip() for q in questions)))
    return tuple(pairs)


def article_paths(corpus_dir: Path) -> list[Path]:
    """Every article file under ``corpus_dir``, hidden files and folders left out, in a stable order."""
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus folder {corpus_dir} does not exist: create it and add articles")
    found = []
    for folder, subfolders, files in os.walk(corpus_dir):
        subfolders[:] = [name for name in subfolders if not name.startswith(".") and name != PHRASINGS_DIR]
        found += [
            os.path.join(folder, name)
            for name in files
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in ARTICLE_SUFFIXES
        ]
    return [Path(path) for path in sorted(found)]


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CorpusError(
            f"{path} line {line}: not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8 and run ingest again"
        ) from None


def _front_matter(path: Path, text: str) -> tuple[dict[str, object], str, int]:
    """Split off a leading ``---`` YAML block; return it, the rest, and the rest's first line."""
    if not text.startswith("---\n"):
        return {}, text, 1
    end = text.find("\n---\n", 4)
    if end == -1:
        raise CorpusError(f"{path} line 1: front matter opened with '---' is never closed")
    try:
        meta = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError as exc:
        raise CorpusError(f"{path}: front matter is not valid YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise CorpusError(f"{path} line 2: front matter must be 'key: value' lines")
    rest = text[end + len("\n---\n") :]
    return meta, rest, text[: end + len("\n---\n")].count("\n") + 1


def split_sections(body: str, first_line: int = 1) -> list[Section]:
    """Headings and the text under each, outside fenced code blocks."""
    sections: list[Section] = []
    heading: tuple[int, str, int] | None = None
    lines: list[str] = []
    fenced = False
    for number, line in enumerate(body.split("\n"), start=first_line):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match:
            if heading:
                sections.append(Section(heading[0], heading[1], heading[2], "\n".join(lines).strip()))
            heading, lines = (len(match.group(1)), match.group(2), number), []
        else:
            lines.append(line)
    if heading:
        sections.append(Section(heading[0], heading[1], heading[2], "\n".join(lines).strip()))
    return sections


def parse_article(path: Path, corpus_dir: Path, raw: bytes | None = None) -> Article:
    raw = path.read_bytes() if raw is None else raw
    if len(raw) > MAX_ARTICLE_BYTES:
        raise CorpusError(f"{path}: {len(raw):,} bytes is over the {MAX_ARTICLE_BYTES:,}-byte limit; split the article")
    text = _decode(path, raw).replace("\r\n", "\n").replace("\r", "\n")
    meta, body, first_line = _front_matter(path, text)
    sections = split_sections(body, first_line)
    if not sections:
        raise CorpusError(f"{path}: no Markdown headings; give the article a '# Title' and '## Section' headings")
    title = str(meta.get("title") or next((s.title for s in sections if s.level == 1), sections[0].title))
    source = path.relative_to(corpus_dir).as_posix()
    return Article(
        source=source,
        title=title,
        body=body,
        meta=meta,
        sections=tuple(sections),
        phrasings=read_phrasings(phrasings_path(corpus_dir, source), source),
    )


def check_article(article: Article, path: Path) -> list[str]:
    """Problems a maintainer must fix before the article can be published."""
    problems = []
    following = article.sections[1:] + (None,)
    for section, after in zip(article.sections, following, strict=True):
        has_subsections = after is not None and after.level > section.level
        if section.level > 1 and not section.body and not has_subsections:
            problems.append(f"{path} line {section.line}: section '{section.title}' is empty")
    if not any(section.body for section in article.sections):
        problems.append(f"{path}: the article has headings but no text")
    if article.meta.get("primary") and article.safety is None:
        missing = [name for name in SAFETY_SECTIONS if not article.section_text(name)]
        problems.append(
            f"{path}: the primary article lacks the safety section(s) {', '.join(missing)}; "
            f"add '## {missing[0]}' with its text"
        )
    return problems


def sentences(text: str) -> list[str]:
    """Split a passage into sentences and list items, keeping each one's exact wording."""
    parts = []
    for piece in _SENTENCE.split(text):
        piece = piece.strip()
        if piece.startswith(("- ", "* ")):
            piece = piece[2:].strip()
        if piece:
            parts.append(piece)
    return parts


def article_sentences(article: Article) -> list[str]:
    """Every sentence and list item of the article's sections, as quotes are cut from them."""
    return [s for section in article.sections for s in sentences(section.body)]


def check_phrasings(article: Article, path: Path) -> list[str]:
    """Each key phrase must pick out exactly one sentence of the article. A key that no longer does
    (the sentence was edited) leaves that sentence without its phrasings: ingest warns and goes on,
    ``ingest.py --check`` fails."""
    if not article.phrasings:
        return []
    where = f"phrasings for {path}"
    found = article_sentences(article)
    problems = []
    for key, _questions in article.phrasings:
        matches = [s for s in found if key in s]
        if len(matches) != 1:
            what = "no sentence" if not matches else f"{len(matches)} sentences"
            problems.append(f"{where}: key {key!r} matches {what}; copy a phrase that only one sentence holds")
    return problems


def load_corpus(corpus_dir: Path) -> list[Article]:
    """Every article, checked; the first problem found stops everything."""
    articles = []
    problems: list[str] = []
    for path in article_paths(corpus_dir):
        article = parse_article(path, corpus_dir)
        problems += check_article(article, path)
        articles.append(article)
    stop_on(problems, len(articles), corpus_dir)
    return articles


def stop_on(problems: list[str], articles: int, corpus_dir: Path) -> None:
    """Every problem found in the corpus at once, or an empty corpus: nothing is published from it."""
    if problems:
        raise CorpusError("\n".join(problems))
    if not articles:
        raise CorpusError(f"corpus folder {corpus_dir} holds no .md or .txt articles")


def default_safety(articles: Iterable[Article | ArticleInfo]) -> tuple[str, dict[str, str]]:
    """The safety text used where no cited article has its own: the primary article's."""
    infos = [a.info() if isinstance(a, Article) else a for a in articles]
    for article in sorted(infos, key=lambda a: (not a.primary, a.source)):
        if article.safety:
            return article.source, article.safety
    raise CorpusError(
        "no article in the corpus has both a 'When to Seek Professional Help' and a "
        "'Disclaimer' section; every reply needs them, so add them to the primary article"
    )
