"""Answer quality in one report: the dev and test patient sets, and real patient questions (K-QA).

``python -m assistant quality --out docs/quality.md`` asks every message and prints the numbers
side by side. The dev split is tuned on; the test split is not, and its targets decide the exit code.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from ..answering.compose import ANSWERED, URGENT, Reply
from ..config import Settings
from ..errors import EvalFileError
from .patientset import Scores, flag_table, load_patient_set, score_set, table, voice_table

TARGET_ANSWERED = 0.03
STATUSES = ("answered", "not_covered", "urgent", "rejected", "unavailable")


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


@dataclass
class Abstention:
    """What real patient questions about other things got."""

    counts: Counter[str] = field(default_factory=Counter)
    answered: list[tuple[str, str, str]] = field(default_factory=list)  # question, section, first quote
    escalated: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def share_answered(self) -> float:
        return self.counts[ANSWERED] / max(self.total, 1)


def abstention(assistant, questions: Sequence[str]) -> Abstention:  # noqa: ANN001 - an Assistant
    result = Abstention()
    for question in tqdm(questions, desc="K-QA", unit="q", disable=None):
        reply = assistant.ask(question)
        result.counts[reply.status] += 1
        if reply.status == URGENT:
            result.escalated.append((question, ", ".join(sorted(set(reply.trace.flag_ids())))))
        if reply.status == ANSWERED:
            result.answered.append((question, reply.quotes[0].section, reply.quotes[0].text))
    return result


def ends_with_safety(reply: Reply) -> bool:
    return bool(reply.safety) and reply.answer.endswith(reply.safety)


def run_quality(
    settings: Settings,
    sets: Sequence[Path],
    kqa: Path | None = None,
    out: Path | None = None,
    held_out: Sequence[str] = ("patient-test",),
) -> int:
    """Score each patient set and K-QA; exit 1 if the test split or K-QA misses a target.

    Misses are listed for every set but the ``held_out`` ones, which are never tuned on."""
    from ..wiring import build

    assistant = build(settings)
    columns: list[tuple[str, Scores]] = []
    for path in sets:
        patient_set = load_patient_set(path)
        columns.append((patient_set.name, score_set(patient_set, assistant.ask, ends_with_safety)))
    kqa_result = abstention(assistant, read_questions(kqa)) if kqa else None
    command = "python -m assistant quality " + " ".join(
        [*(f"--set {p}" for p in sets), *([f"--kqa {kqa}"] if kqa else []), *([f"--out {out}"] if out else [])]
    )
    lines = [
        "# Answer quality",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `{command}`.",
        "",
        "A quote *answers* when it holds a key phrase of an article sentence that answers the question",
        "(`tests/data/README.md`). **patient-dev** and **patient-dev-b** are tuned on; **patient-test** was",
        "written before tuning and is never tuned on: its column is the one that counts.",
        "",
        *table(columns),
        "",
        "First quote answers, by how the patient wrote:",
        "",
        *voice_table(columns),
        "",
        "Red flags escalated with the right flag, by flag:",
        "",
        *flag_table(columns),
    ]
    failed = [
        f"{name}: {target}" for name, scores in columns if name.endswith("test") for target in scores.failed_targets()
    ]
    if kqa_result is not None and kqa is not None:
        if kqa_result.share_answered > TARGET_ANSWERED:
            failed.append(f"K-QA answered {kqa_result.share_answered:.1%}")
        lines += ["", *kqa_section(kqa_result, kqa.name)]
    for name, scores in columns:
        if name not in held_out:
            lines += ["", f"## Misses on {name}", "", *([f"- {m}" for m in scores.misses] or ["(none)"])]
    lines += ["", f"Targets missed: {', '.join(failed) if failed else 'none'}."]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return 1 if failed else 0


def kqa_section(result: Abstention, name: str) -> list[str]:
    """The K-QA part of the report: statuses, the target, and every answered or escalated question."""
    share = result.share_answered
    return [
        "## Real patient questions the article was not written for (K-QA)",
        "",
        f"{result.total:,} questions from `{name}` (K-QA, MIT licence). Almost none is answered by",
        "the article, so every `answered` reply is listed for review.",
        "",
        "| status | count | share |",
        "| --- | ---: | ---: |",
        *[f"| {s} | {result.counts[s]} | {result.counts[s] / max(result.total, 1):.1%} |" for s in STATUSES],
        "",
        f"Target: answered ≤ {TARGET_ANSWERED:.0%}: **{'met' if share <= TARGET_ANSWERED else 'MISSED'}** ({share:.2%}).",
        "",
        "Every answered question:",
        "",
        *([f"- {q!r} → {section}: “{quote[:90]}”" for q, section, quote in result.answered] or ["(none)"]),
        "",
        "Every escalated question (for review of false alarms):",
        "",
        *([f"- {q!r} → {flags}" for q, flags in result.escalated] or ["(none)"]),
    ]
