"""Honest-abstention numbers on real patient questions the article was never written for."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from .config import Settings
from .errors import EvalFileError

TARGET_ANSWERED = 0.03


def read_questions(path: Path) -> list[str]:
    """One JSON object a line with a ``Question`` (or ``question``) field, or plain lines."""
    questions = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalFileError(f"{path}: cannot read questions: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalFileError(f"{path} line {number}: not valid JSON: {exc}") from None
            question = entry.get("Question") or entry.get("question")
            if not isinstance(question, str):
                raise EvalFileError(f"{path} line {number}: no 'Question' field")
            questions.append(question)
        else:
            questions.append(line.strip())
    return questions


def run_abstention(path: Path, settings: Settings, out: Path | None = None) -> int:
    from .service import create_assistant

    questions = read_questions(path)
    assistant = create_assistant(settings)
    counts: Counter[str] = Counter()
    answered = []
    for question in tqdm(questions, desc="Questions", unit="q", disable=None):
        reply = assistant.ask(question)
        counts[reply.status] += 1
        if reply.status == "answered":
            answered.append((question, reply.sources[0].section if reply.sources else "", reply.sources[0].score if reply.sources else 0))
    total = max(len(questions), 1)
    share = counts["answered"] / total
    lines = [
        "# Answer quality on real patient questions",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m assistant eval-abstention {path.name} --out docs/quality.md`",
        f"on {len(questions):,} questions from `{path.name}` (K-QA, MIT licence). Almost none is answered by the article,",
        "so every `answered` reply below is listed for review.",
        "",
        "| status | count | share |",
        "| --- | ---: | ---: |",
        *[f"| {status} | {counts[status]} | {counts[status] / total:.1%} |" for status in ("answered", "not_covered", "urgent", "rejected", "unavailable")],
        "",
        f"Target: answered ≤ {TARGET_ANSWERED:.0%} — **{'met' if share <= TARGET_ANSWERED else 'MISSED'}** ({share:.2%}).",
        "",
        "## Every answered question",
        "",
    ]
    lines += [f"- {q!r} → {section} (relevance {score:.2f})" for q, section, score in answered] or ["(none)"]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return 0 if share <= TARGET_ANSWERED else 1
