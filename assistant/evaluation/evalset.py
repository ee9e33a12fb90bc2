"""Running a staff test set against the assistant, and the ingest gate that runs one on a candidate version.

A run always asks every case, so a crash can never be reported as a pass (test sets: ``cases.py``)."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..answering.compose import Reply, Source
from ..config import Settings
from ..errors import EvalFileError
from .cases import Case, Result, all_passed, load_cases, normalise_phrase
from .reports import REPORTS, table_text, write_report

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from ..articles.indexing import Gate
    from ..articles.manifest import Manifest
    from ..embeddings import Embedder

_MD_UNESCAPE = re.compile(r"\\([\\`*_\[\]<|~])")

AskFn = Callable[[str, list[dict[str, str]]], Reply]


# -- reading a test set ---------------------------------------------------------------------------


# -- running it -----------------------------------------------------------------------------------


def run_eval(cases: Sequence[Case], ask_fn: AskFn) -> list[Result]:
    """Ask every case and check its reply; a case that crashes fails, the run goes on."""
    results = []
    for case in cases:
        history = [{"role": "user", "content": turn} for turn in case.history]
        started = time.perf_counter()
        try:
            reply = ask_fn(case.question, history)
        except Exception as exc:  # recorded as this case's failure, so it can never pass unseen
            seconds = time.perf_counter() - started
            results.append(
                Result(case, False, (f"crashed: {type(exc).__name__}: {exc}",), "error", (), "", None, seconds)
            )
            continue
        reasons = tuple(check(case, reply))
        sections = tuple(source.section for source in reply.sources)
        seconds = time.perf_counter() - started
        results.append(
            Result(case, not reasons, reasons, reply.status, sections, reply.answer, reply.index_version, seconds)
        )
    return results


def check(case: Case, reply: Reply) -> list[str]:
    """Why ``reply`` does not meet ``case``; an empty list means it passes."""
    reasons = []
    if reply.status != case.expect:
        error = reply.trace.error
        reasons.append(f"expected {case.expect}, got {reply.status}" + (f" ({error})" if error else ""))
    if case.section or case.article:
        if not any(_source_matches(source, case) for source in reply.sources):
            wanted = " in ".join(repr(w) for w in (case.section, case.article) if w)
            found = "; ".join(source.section for source in reply.sources) or "none"
            reasons.append(f"no source {wanted} (sources: {found})")
    text = _plain(reply.answer)
    reasons += [f"answer lacks {phrase!r}" for phrase in case.must_include if normalise_phrase(phrase) not in text]
    reasons += [f"answer contains {phrase!r}" for phrase in case.must_not_include if normalise_phrase(phrase) in text]
    return reasons


def _source_matches(source: Source, case: Case) -> bool:
    if case.article and normalise_phrase(source.article) != normalise_phrase(case.article):
        return False
    if case.section:
        wanted = [normalise_phrase(part) for part in case.section.split(">")]
        have = [normalise_phrase(part) for part in source.section.split(">")]
        return have[-len(wanted) :] == wanted
    return True


def _plain(answer: str) -> str:
    """The answer as a patient reads it: Markdown escapes removed, spacing and case ignored."""
    return normalise_phrase(_MD_UNESCAPE.sub(r"\1", answer))


# -- showing the results --------------------------------------------------------------------------


# -- entry points ---------------------------------------------------------------------------------


def run_eval_command(path: Path, settings: Settings, report: str | Path | None = None) -> int:
    """``python -m assistant eval FILE``: 0 when every case passes, 1 otherwise."""
    from ..wiring import build

    report_path = Path(report) if report else None
    if report_path is not None and report_path.suffix.lower() not in REPORTS:
        raise EvalFileError(f"report {report_path}: name it .md (Markdown) or .html (HTML)")
    cases = load_cases(path)
    assistant = build(settings)
    assistant.reader.snapshot()  # no index or the wrong model: one clear error, not a table of failures
    results = run_eval(cases, assistant.ask)
    _out(table_text(results))
    if report_path is not None:
        write_report(report_path, results, path.name)
        _out(f"Report written to {report_path}")
    return 0 if all_passed(results) else 1


def make_gate(path: Path, settings: Settings, embedder: Embedder | None = None) -> Gate:
    """An ingest gate: publish the candidate version only if this test set passes on it."""
    from ..answering.retrieval import PinnedReader, Snapshot
    from ..wiring import build

    cases = load_cases(path)  # a malformed set stops ingest before anything is built

    def gate(manifest: Manifest, collection: Collection) -> tuple[bool, str]:
        candidate = PinnedReader(Snapshot.of(manifest, collection, settings.in_memory_chunks))
        assistant = build(settings, embedder=embedder, reader=candidate, warm=False)
        try:
            assistant.warm()
            results = run_eval(cases, assistant.ask)
        finally:
            assistant.services.store.close()
        return all_passed(results), f"Test set {path}:\n{table_text(results)}"

    return gate


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
