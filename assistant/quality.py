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


def section_matches(section: str, expected: str | list[str]) -> bool:
    return section.endswith(tuple(expected) if isinstance(expected, list) else expected)


def own_sets(assistant, data_dir: Path) -> tuple[list[str], bool]:  # noqa: ANN001 - an Assistant
    """In-scope recall, red-flag recall and false alarms on the project's own sets, if present."""
    import yaml

    in_scope_path, flags_path = data_dir / "in_scope.yaml", data_dir / "red_flags.yaml"
    if not (in_scope_path.is_file() and flags_path.is_file()):
        return [f"(the project's own sets in {data_dir} were not found; skipped)"], True
    in_scope = yaml.safe_load(in_scope_path.read_text(encoding="utf-8"))
    flags = yaml.safe_load(flags_path.read_text(encoding="utf-8"))
    right = sum(
        1
        for case in in_scope
        if (reply := assistant.ask(case["question"])).status == "answered"
        and any(section_matches(s.section, case["section"]) for s in reply.sources[:3])
    )
    caught = sum(
        1 for case in flags["red_flags"] if case["flag"] in [f["flag"] for f in assistant.ask(case["message"]).details["triage"]]
    )
    alarms = sum(1 for message in flags["mild"] if assistant.ask(message).status == "urgent")
    met = right == len(in_scope) and caught == len(flags["red_flags"]) and alarms * 20 <= len(flags["mild"])
    return [
        "| set | result | target |",
        "| --- | ---: | --- |",
        f"| in-scope questions answered from the right section (top 3) | {right}/{len(in_scope)} | all |",
        f"| red-flag messages escalated with the right flag | {caught}/{len(flags['red_flags'])} | all |",
        f"| mild look-alikes wrongly escalated | {alarms}/{len(flags['mild'])} | ≤ 1 in 20 |",
    ], met


def run_abstention(path: Path, settings: Settings, out: Path | None = None, data_dir: Path = Path("tests/data")) -> int:
    from .service import create_assistant

    questions = read_questions(path)
    assistant = create_assistant(settings)
    counts: Counter[str] = Counter()
    answered, urgent = [], []
    for question in tqdm(questions, desc="Questions", unit="q", disable=None):
        reply = assistant.ask(question)
        counts[reply.status] += 1
        if reply.status == "urgent":
            urgent.append((question, ", ".join(sorted({f["flag"] for f in reply.details["triage"]}))))
        if reply.status == "answered":
            answered.append((question, reply.sources[0].section if reply.sources else "", reply.sources[0].score if reply.sources else 0))
    own, own_met = own_sets(assistant, data_dir)
    total = max(len(questions), 1)
    share = counts["answered"] / total
    lines = [
        "# Answer quality on real patient questions",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m assistant eval-abstention {path} --out docs/quality.md`",
        f"on {len(questions):,} questions from `{path.name}` (K-QA, MIT licence). Almost none is answered by the article,",
        "so every `answered` reply below is listed for review.",
        "",
        "| status | count | share |",
        "| --- | ---: | ---: |",
        *[f"| {status} | {counts[status]} | {counts[status] / total:.1%} |" for status in ("answered", "not_covered", "urgent", "rejected", "unavailable")],
        "",
        f"Target: answered ≤ {TARGET_ANSWERED:.0%} — **{'met' if share <= TARGET_ANSWERED else 'MISSED'}** ({share:.2%}).",
        "",
        "## The project's own sets (`tests/data/`)",
        "",
        *own,
        "",
        "## Every answered question",
        "",
    ]
    lines += [f"- {q!r} → {section} (relevance {score:.2f})" for q, section, score in answered] or ["(none)"]
    lines += ["", "## Every escalated question (for review of false alarms)", ""]
    lines += [f"- {q!r} → {flags}" for q, flags in urgent] or ["(none)"]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return 0 if share <= TARGET_ANSWERED and own_met else 1
