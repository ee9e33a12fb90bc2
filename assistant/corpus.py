"""Articles as files: reading, front matter, headings, and the checks a maintainer relies on."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import CorpusError

ARTICLE_SUFFIXES = (".md", ".txt")
SEEK_HELP = "When to Seek Professional Help"
DISCLAIMER = "Disclaimer"
SAFETY_SECTIONS = (SEEK_HELP, DISCLAIMER)
MAX_ARTICLE_BYTES = 2_000_000

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


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


@dataclass(frozen=True)
class Article:
    source: str  # path relative to the corpus folder, with forward slashes
    title: str
    body: str  # Markdown without the front matter
    meta: dict[str, object] = field(default_factory=dict)
    sections: tuple[Section, ...] = ()

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
        )


def article_paths(corpus_dir: Path) -> list[Path]:
    """Every article file under ``corpus_dir``, hidden files and folders left out, in a stable order."""
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus folder {corpus_dir} does not exist: create it and add articles")
    found = []
    for folder, subfolders, files in os.walk(corpus_dir):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
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
            f"{path} line {line}: not UTF-8 (byte 0x{raw[exc.start]:02x}); "
            "save the file as UTF-8 and run ingest again"
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
        raise CorpusError(
            f"{path}: {len(raw):,} bytes is over the {MAX_ARTICLE_BYTES:,}-byte limit; split the article"
        )
    text = _decode(path, raw).replace("\r\n", "\n").replace("\r", "\n")
    meta, body, first_line = _front_matter(path, text)
    sections = split_sections(body, first_line)
    if not sections:
        raise CorpusError(
            f"{path}: no Markdown headings; give the article a '# Title' and '## Section' headings"
        )
    title = str(meta.get("title") or next((s.title for s in sections if s.level == 1), sections[0].title))
    return Article(
        source=path.relative_to(corpus_dir).as_posix(),
        title=title,
        body=body,
        meta=meta,
        sections=tuple(sections),
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


def iter_articles(corpus_dir: Path) -> Iterator[Article]:
    for path in article_paths(corpus_dir):
        yield parse_article(path, corpus_dir)


def load_corpus(corpus_dir: Path) -> list[Article]:
    """Every article, checked; the first problem found stops everything."""
    articles = []
    problems: list[str] = []
    for path in article_paths(corpus_dir):
        article = parse_article(path, corpus_dir)
        problems += check_article(article, path)
        articles.append(article)
    if problems:
        raise CorpusError("\n".join(problems))
    if not articles:
        raise CorpusError(f"corpus folder {corpus_dir} holds no .md or .txt articles")
    return articles


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
