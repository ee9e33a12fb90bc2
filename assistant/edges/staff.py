"""The staff review tab: what is behind a reply, test sets, and patient feedback.

Built only when staff can sign in (named accounts in the users file, or the single-user
``ASSISTANT_STAFF_PASSWORD``), so otherwise neither the tab nor its endpoints exist. Every
function takes the password first and the name last (a name is optional with the shortcut
password) and checks them before anything else
(assistant/edges/accounts.py: repeated failures are slowed, then locked out, each logged with its
source address): a wrong one gets "Access denied." and no other data.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr

from ..answering.compose import Reply, escape_markdown
from ..answering.service import Assistant
from ..config import Settings
from ..errors import EvalFileError
from ..evaluation.cases import Result, load_cases
from ..evaluation.evalset import run_eval
from ..evaluation.reports import fenced, markdown_report
from .accounts import Gatekeeper, UserFile
from .budget import ANSWERING
from .feedback import COLUMNS, FeedbackStore

log = logging.getLogger("assistant.staff")

DENIED = "Access denied."
STAFF_API = "undocumented"  # hidden from the API page; the password is what protects them
ALREADY_RUNNING = "A test set is already running; please wait for it to finish and try again."


def gatekeeper(settings: Settings) -> Gatekeeper:
    return Gatekeeper(
        UserFile(settings.staff_users),
        settings.staff_password,
        free=settings.staff_slow_after,
        lock_after=settings.staff_lockout_failures,
        lockout_seconds=settings.staff_lockout_seconds,
    )


def staff_enabled(settings: Settings) -> bool:
    """Whether anyone can sign in as staff: then, and only then, the tab and its endpoints exist."""
    return gatekeeper(settings).enabled()


def source_of(request: gr.Request | None) -> str:
    client = getattr(request, "client", None)
    return str(getattr(client, "host", None) or "unknown")


def reply_markdown(reply: Reply) -> str:
    """Everything behind a reply, for staff: triage, retrieval, the composed answer, timings."""
    trace = reply.trace
    quoted = {source.chunk_id for source in reply.sources}
    nearest = trace.not_covered_similarity
    lines = [
        f"### Status: {escape_markdown(reply.status)}",
        f"Index version **{reply.index_version if reply.index_version is not None else 'none'}**, "
        f"answered in **{trace.seconds if trace.seconds is not None else '?'} s**",
        "",
        f"**Retrieval query:** {escape_markdown(trace.retrieval_query)}  ",
        f"**Context from earlier messages:** {escape_markdown(trace.context or 'none')}  ",
        f"**Not-covered topic:** {escape_markdown(trace.topic or 'none')}",
    ]
    if trace.error:
        lines.append(f"\n**Error:** {escape_markdown(trace.error)}")
    lines += ["", "#### Triage"]
    if trace.triage:
        lines += ["| Flag | Tier | Clause | Found by |", "|---|---|---|---|"]
        lines += [
            "| " + " | ".join(escape_markdown(v) for v in (f.flag, f.tier, f.clause, f.how)) + " |"
            for f in trace.triage
        ]
    else:
        lines.append("No red flags found.")
    lines += ["", "#### Ranking", "", f"**Decision:** {escape_markdown(trace.ranking or 'none')}  "]
    lines.append(f"**Nearest question the article does not answer:** {nearest if nearest is not None else '–'}")
    if trace.candidates:
        lines += ["", "| # | Score | Sentence | Matched phrasing |", "|---|---|---|---|"]
        lines += [
            f"| {number} | {c.score:.4f} | {escape_markdown(c.text[:160])} | {escape_markdown(c.matched or '(its own wording)')} |"
            for number, c in enumerate(trace.candidates, start=1)
        ]
    lines += ["", "#### Retrieved chunks"]
    if trace.hits:
        lines += ["| # | Score | Section | Article | Chunk | Quoted |", "|---|---|---|---|---|---|"]
        for number, hit in enumerate(trace.hits, start=1):
            lines.append(
                f"| {number} | {hit.score:.4f} | {escape_markdown(hit.section)} | {escape_markdown(hit.article)} "
                f"| {escape_markdown(hit.chunk_id)} | {'yes' if hit.chunk_id in quoted else ''} |"
            )
    else:
        lines.append("Nothing was retrieved.")
    lines += ["", "#### Composed answer (as the patient sees it)", "", reply.answer, "", "---", "#### Raw"]
    raw = {**reply.to_dict(), "trace": trace.to_dict()}
    lines.append(fenced(json.dumps(raw, indent=2, ensure_ascii=False, default=str), "json"))
    return "\n".join(lines)


class StaffHandlers:
    """The staff functions Gradio calls; each one checks the password first."""

    def __init__(
        self,
        assistant: Assistant,
        settings: Settings,
        feedback: FeedbackStore | None,
        export_dir: Path,
        gate: Gatekeeper | None = None,
    ) -> None:
        self.assistant = assistant
        self.settings = settings
        self.feedback = feedback
        self.export_dir = export_dir
        self.gate = gate or gatekeeper(settings)
        self._eval = threading.Lock()  # one test run at a time, so a long set holds one worker at most

    def signed_in(self, name: object, password: object, request: gr.Request | None) -> tuple[str | None, str]:
        """(who, "") for the right name and password; otherwise (None, the denial to show)."""
        who, why = self.gate.sign_in(name, password, source_of(request))
        return who, "" if who else f"{DENIED} {why}".strip()

    def inspect(
        self, password: str, question: str, earlier: str, name: str = "", request: gr.Request | None = None
    ) -> str:
        who, denied = self.signed_in(name, password, request)
        if not who:
            return denied
        history = [{"role": "user", "content": line} for line in (earlier or "").splitlines() if line.strip()]
        return reply_markdown(self.assistant.ask(question or "", history))

    def run_uploaded(self, password: str, upload: str | None, name: str = "", request: gr.Request | None = None) -> str:
        who, denied = self.signed_in(name, password, request)
        if not who:
            return denied
        if not upload:
            return "Choose a YAML test set to upload first."
        path = Path(upload)
        return self._run(path, path.name)

    def run_project(self, password: str, name: str = "", request: gr.Request | None = None) -> str:
        who, denied = self.signed_in(name, password, request)
        if not who:
            return denied
        return self._run(self.settings.staff_set, str(self.settings.staff_set))

    def _run(self, path: Path, label: str) -> str:
        try:
            cases = load_cases(path, label)
        except EvalFileError as exc:
            return f"**The test set has problems, so nothing was run:**\n\n{fenced(str(exc))}"
        if not self._eval.acquire(blocking=False):
            return ALREADY_RUNNING
        try:
            results: list[Result] = run_eval(cases, self.assistant.ask)
        finally:
            self._eval.release()
        return markdown_report(results, label)

    def show_feedback(
        self, password: str, name: str = "", request: gr.Request | None = None
    ) -> tuple[str, list[list[object]]]:
        who, denied = self.signed_in(name, password, request)
        if not who:
            return denied, []
        if self.feedback is None:
            return "Patient feedback is not being collected.", []
        rows = [list(row) for row in self.feedback.rows()]
        return f"The {len(rows)} most recent ratings, newest first.", rows

    def export_feedback(
        self, password: str, name: str = "", request: gr.Request | None = None
    ) -> tuple[str, str | None]:
        who, denied = self.signed_in(name, password, request)
        if not who:
            return denied, None
        if self.feedback is None:
            return "Patient feedback is not being collected.", None
        folder = Path(tempfile.mkdtemp(prefix="export-", dir=self.export_dir))  # mode 0700
        path = folder / f"feedback-{datetime.now(UTC):%Y%m%d-%H%M%S}.csv"
        # Readable by the app's user only, from creation on (Gradio's copy for download keeps the mode).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(self.feedback.to_csv())
        timer = threading.Timer(self.settings.export_ttl_seconds, _remove, args=(folder,))
        timer.daemon = True
        timer.start()
        return "Your CSV file is ready to download.", str(path)


def _remove(folder: Path) -> None:
    """Delete an export folder once its download window has passed."""
    for item in folder.glob("*"):
        item.unlink(missing_ok=True)
    folder.rmdir()


def build_staff_tab(assistant: Assistant, settings: Settings, feedback: FeedbackStore | None) -> None:
    """Add the "Staff review" and "Review" tabs to the Blocks being built; call only when ``staff_enabled``.

    ``assistant`` may be the chat's, feeding the review queue: staff questions go to the one inside."""
    from .review import build_review_tab, plain_assistant, queue_of

    export_dir = Path(tempfile.mkdtemp(prefix="assistant-staff-"))
    staff = StaffHandlers(plain_assistant(assistant), settings, feedback, export_dir)
    with gr.Tab("Staff review", elem_id="staff-tab"):
        with gr.Row():
            name = gr.Textbox("", label="Staff name", elem_id="staff-name")
            password = gr.Textbox(label="Password", type="password", elem_id="staff-password")

        gr.Markdown("### See what is behind a reply")
        question = gr.Textbox(label="Question", elem_id="staff-question")
        earlier = gr.Textbox(label="Earlier messages in the conversation (optional, one per line)", lines=2)
        inspect = gr.Button("Show the reply and its details")
        inspected = gr.Markdown(elem_id="staff-inspected")

        gr.Markdown("### Run a test set")
        upload = gr.File(label="Test set (YAML)", file_types=[".yaml", ".yml"], type="filepath")
        with gr.Row():
            run_upload = gr.Button("Run the uploaded test set")
            run_project = gr.Button("Run the project's test set")
        results = gr.Markdown(elem_id="staff-results")

        gr.Markdown("### Patient feedback")
        with gr.Row():
            show = gr.Button("Show feedback")
            export = gr.Button("Export as CSV")
        feedback_note = gr.Markdown()
        table = gr.Dataframe(headers=list(COLUMNS), interactive=False, wrap=True)
        download = gr.File(label="Feedback CSV", interactive=False)

    hidden: dict[str, Any] = {"api_visibility": STAFF_API}
    # Staff questions share the patients' one budget of workers and queue places.
    answering: dict[str, Any] = {"concurrency_id": ANSWERING, "concurrency_limit": settings.concurrency_limit}
    inspect.click(
        staff.inspect, [password, question, earlier, name], inspected, api_name="staff_inspect", **answering, **hidden
    )
    question.submit(
        staff.inspect, [password, question, earlier, name], inspected, api_visibility="private", **answering
    )
    # One test run at a time (StaffHandlers refuses a second), so a long set holds one worker at most.
    running = {**answering, **hidden}
    run_upload.click(staff.run_uploaded, [password, upload, name], results, api_name="staff_run_set", **running)
    run_project.click(staff.run_project, [password, name], results, api_name="staff_run_project_set", **running)
    show.click(staff.show_feedback, [password, name], [feedback_note, table], api_name="staff_feedback", **hidden)
    export.click(staff.export_feedback, [password, name], [feedback_note, download], api_name="staff_export", **hidden)
    build_review_tab(staff, password, name, settings.staff_set, queue_of(assistant), hidden)
