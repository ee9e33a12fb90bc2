"""MedQuAD articles (github.com/abachaa/MedQuAD, CC BY 4.0) as corpus files: distractors for the scale benchmark."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Sequence
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
EDIT = "\n\nThis sentence was added by the benchmark to measure a one-article reindex.\n"


def load(path: Path, limit: int | None = None) -> list[dict]:
    """The articles, or ``limit`` of them spread evenly over the file (so every source site is represented)."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    if limit is not None and limit < len(rows):
        step = len(rows) / limit
        rows = [rows[int(i * step)] for i in range(limit)]
    return rows


def materialise(rows: Sequence[dict], folder: Path) -> list[Path]:
    """One Markdown file per article, named after its id."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for row in rows:
        path = folder / f"{_UNSAFE.sub('-', row['id'])}.md"
        path.write_text(row["text"].rstrip() + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def edit(path: Path) -> None:
    """Change one article the way an editor would: a sentence added to its last section."""
    path.write_text(path.read_text(encoding="utf-8").rstrip() + EDIT, encoding="utf-8")
