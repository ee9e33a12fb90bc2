"""A staff test set's results as a terminal table, a Markdown report or an HTML page."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ..answering.compose import escape_markdown
from ..errors import EvalFileError
from .cases import Result, all_passed

HEADERS = ["#", "Result", "Case", "Question", "Expected", "Got", "Sources", "Reason"]


def summary_line(results: Sequence[Result]) -> str:
    failed = sum(not r.passed for r in results)
    verdict = "PASSED" if all_passed(results) else "FAILED"
    versions = sorted({r.index_version for r in results if r.index_version is not None})
    on = f" on index version {', '.join(map(str, versions))}" if versions else ""
    return (
        f"{verdict}: {len(results) - failed} of {len(results)} cases passed"
        + (f" ({failed} failed)" if failed else "")
        + on
    )


def table_text(results: Sequence[Result]) -> str:
    """A plain-text pass/fail table with the reason for every failure."""
    rows = [("#", "result", "case", "expected", "got", "reason")]
    for number, r in enumerate(results, start=1):
        rows.append(
            (str(number), "PASS" if r.passed else "FAIL", r.case.name, r.case.expect, r.status, "; ".join(r.reasons))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)) + "  " + row[5]
        for row in rows
    ]
    return "\n".join([*(line.rstrip() for line in lines), "", summary_line(results)])


def _cells(number: int, r: Result) -> list[str]:
    question = " / ".join([*r.case.history, r.case.question])
    return [
        str(number),
        "PASS" if r.passed else "FAIL",
        r.case.name,
        question if len(question) <= 200 else question[:200] + "…",
        r.case.expect,
        r.status,
        "; ".join(r.sections),
        "; ".join(r.reasons),
    ]


def markdown_report(results: Sequence[Result], title: str) -> str:
    """The results as Markdown; every value is escaped, so nothing in a case or answer renders as markup."""

    def cell(text: str) -> str:
        return escape_markdown(" ".join(text.split())) or " "

    lines = [
        f"# Test set {cell(title)}",
        "",
        f"**{cell(summary_line(results))}** ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(cell(c) for c in _cells(n, r)) + " |" for n, r in enumerate(results, start=1)]
    failed = [(n, r) for n, r in enumerate(results, start=1) if not r.passed and r.answer]
    if failed:
        lines += ["", "## Answers of the failed cases"]
        for number, r in failed:
            lines += ["", f"### {number}. {cell(r.case.name)}", "", fenced(r.answer)]
    return "\n".join(lines) + "\n"


def html_report(results: Sequence[Result], title: str) -> str:
    """The results as a standalone HTML page; every value is escaped."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADERS)
    rows = []
    for number, r in enumerate(results, start=1):
        cells = "".join(f"<td>{esc(c)}</td>" for c in _cells(number, r))
        rows.append(f'<tr class="{"pass" if r.passed else "fail"}">{cells}</tr>')
    answers = "".join(
        f"<h3>{number}. {esc(r.case.name)}</h3><pre>{esc(r.answer)}</pre>"
        for number, r in enumerate(results, start=1)
        if not r.passed and r.answer
    )
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>Test set {esc(title)}</title>'
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:.3em .5em;vertical-align:top;text-align:left}"
        "tr.fail{background:#fde8e8}tr.pass{background:#e9f7ec}pre{white-space:pre-wrap}</style></head>"
        f"<body><h1>Test set {esc(title)}</h1>"
        f"<p><strong>{esc(summary_line(results))}</strong> ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        + (f"<h2>Answers of the failed cases</h2>{answers}" if answers else "")
        + "</body></html>\n"
    )


REPORTS: dict[str, Callable[[Sequence[Result], str], str]] = {".md": markdown_report, ".html": html_report}


def fenced(text: str, info: str = "text") -> str:
    """A Markdown code block that shows ``text`` verbatim, whatever backticks it holds."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}{info}\n{text}\n{fence}"


def write_report(path: Path, results: Sequence[Result], title: str) -> None:
    writer = REPORTS.get(path.suffix.lower())
    if writer is None:
        raise EvalFileError(f"report {path}: name it .md (Markdown) or .html (HTML)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(writer(results, title), encoding="utf-8")
