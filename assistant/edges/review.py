"""Staff review what patients asked and teach the assistant from it (the Review tab).

Questions in the review queue (assistant/edges/reviewlog.py) are grouped by meaning, most frequent
first, each group with its best candidate passages. Staff attach a group to the passage that
answers it, mark it not covered (with who to ask), or add it to a staff test set: every action
writes files (corpus/phrasings, corpus/safety/not-covered.yaml, the test set), never only a
database, and is recorded in the audit log with who and when. Nothing reaches patients until
"Publish", which runs the same ingest as ``python ingest.py --gate <staff set>``; the running
chat follows the new index version at once and reads the safety rules again.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import yaml

from ..answering.compose import ANSWERED, NOT_COVERED, REJECTED, URGENT, Reply, escape_markdown
from ..answering.service import Assistant
from ..config import Settings
from ..errors import AssistantError
from ..evaluation.cases import load_cases
from ..evaluation.reports import fenced
from . import audit
from .reviewlog import Entry, ReviewLog
from .teach import Taught, Teacher

log = logging.getLogger("assistant.review")

REVIEW_NOTICE = (
    "To improve the answers, questions the assistant could not answer clearly are kept for the clinic's "
    "staff to review for a limited time, without anything that identifies you (emails and phone numbers "
    "are removed)."
)
GROUP_SIMILARITY = 0.6  # questions at least this alike (cosine; paraphrases score 0.6 to 0.8 here) are one group
MAX_GROUPS = 50
EXPECT_CHOICES = (ANSWERED, NOT_COVERED, URGENT, REJECTED)


# -- the queue, fed from the patient chat ------------------------------------------------------------


class ReviewingAssistant:
    """The patient chat's assistant: every reply is offered to the review queue. Everything else is
    the wrapped assistant's (staff use ``inner``, so their own questions are never queued)."""

    def __init__(self, inner: Assistant, queue: ReviewLog) -> None:
        self.inner = inner
        self.review = queue

    def ask(self, question: object, history: Any = ()) -> Reply:
        reply = self.inner.ask(question, history)
        try:
            self.review.consider(reply, self.inner.settings.answer_similarity, self.inner.settings.review_near)
        except Exception:  # the review queue must never cost a patient their answer
            log.exception("could not keep a question for review")
        return reply

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class ReviewingFeedback:
    """The feedback store, with each 👎 rating also kept in the review queue."""

    def __init__(self, inner: Any, queue: ReviewLog) -> None:
        self.inner = inner
        self.review = queue

    def rate(self, reply_id: str, reply: dict, liked: bool, *args: Any, **kwargs: Any) -> Any:
        result = self.inner.rate(reply_id, reply, liked, *args, **kwargs)
        if not liked:
            try:
                self.review.rated_down(reply)
            except Exception:
                log.exception("could not keep a rated reply for review")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def review_queue(settings: Settings) -> ReviewLog | None:
    """The queue when ``ASSISTANT_REVIEW_LOG=on``, in the app's database (purged now, and daily while the
    app runs); else None."""
    if not settings.review_log:
        return None
    from ..database import database_url

    queue = ReviewLog(database_url(settings), settings.review_retention_days, settings.max_question_chars)
    queue.purge_daily()
    return queue


def with_review(assistant: Assistant, feedback: Any, settings: Settings) -> tuple[Any, Any]:
    """The assistant and feedback store the chat should use: feeding the review queue when it is on."""
    queue = review_queue(settings)
    if queue is None:
        return assistant, feedback
    return ReviewingAssistant(assistant, queue), (ReviewingFeedback(feedback, queue) if feedback is not None else None)


def plain_assistant(assistant: Any) -> Assistant:
    return getattr(assistant, "inner", assistant)


def queue_of(assistant: Any) -> ReviewLog | None:
    return getattr(assistant, "review", None)


# -- groups of similar questions ---------------------------------------------------------------------


@dataclass
class Group:
    questions: list[str]  # distinct, most asked first
    entries: list[Entry] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)  # best passages, best first, one per section

    @property
    def count(self) -> int:
        return len(self.entries)

    @property
    def label(self) -> str:
        return self.questions[0]


def group_entries(entries: Sequence[Entry], vectors: np.ndarray, similarity: float = GROUP_SIMILARITY) -> list[Group]:
    """Entries grouped by meaning (each joins the group of the most asked question it is near), most
    frequent group first. ``vectors`` holds one unit vector per entry."""
    by_text: dict[str, list[int]] = {}
    for index, entry in enumerate(entries):
        by_text.setdefault(" ".join(entry.question.split()).casefold(), []).append(index)
    order = sorted(by_text.values(), key=len, reverse=True)
    groups: list[tuple[np.ndarray, Group]] = []
    for indexes in order:
        vector = vectors[indexes[0]]
        home = next((g for centre, g in groups if float(centre @ vector) >= similarity), None)
        if home is None:
            home = Group([])
            groups.append((vector, home))
        home.questions.append(entries[indexes[0]].question)
        home.entries += [entries[i] for i in indexes]
    for _, group in groups:
        best: dict[tuple[str, str], dict] = {}
        for entry in group.entries:
            for c in entry.candidates:
                key = (c.get("article", ""), c["section"])
                if key not in best or c["score"] > best[key]["score"]:
                    best[key] = c
        group.candidates = sorted(best.values(), key=lambda c: c["score"], reverse=True)[:5]
    found = [g for _, g in groups]
    found.sort(key=lambda g: g.count, reverse=True)
    return found


def groups_markdown(groups: Sequence[Group]) -> str:
    if not groups:
        return "Nothing to review: no patient question is waiting."
    lines = []
    for number, group in enumerate(groups, start=1):
        reasons = sorted({e.reason for e in group.entries})
        lines.append(f"#### {number}. {escape_markdown(group.label)} — asked {group.count}×")
        lines.append(f"Why it is here: {escape_markdown(', '.join(reasons))}; last asked {group.entries[0].created_at}")
        if len(group.questions) > 1:
            lines.append("Also asked as: " + "; ".join(escape_markdown(q) for q in group.questions[1:6]))
        if group.candidates:
            lines += ["", "| Score | Section | Sentence |", "|---|---|---|"]
            lines += [
                f"| {c['score']:.2f} | {escape_markdown(c['section'])} | {escape_markdown(c['text'][:160])} |"
                for c in group.candidates
            ]
        lines.append("")
    return "\n".join(lines)


# -- the staff test set ------------------------------------------------------------------------------


def add_case(path: Path, question: str, expect: str, section: str | None = None) -> str:
    """Append a case to the staff test set at ``path`` (its text kept as it is); returns its name."""
    if expect not in EXPECT_CHOICES:
        raise AssistantError(f"expected status {expect!r} is not one of {', '.join(EXPECT_CHOICES)}")
    text = path.read_text(encoding="utf-8") if path.exists() else "cases:\n"
    names = set(re.findall(r"^\s*- name:\s*(\S+)", text, re.MULTILINE))
    base = "review-" + "-".join(re.findall(r"[a-z0-9]+", question.casefold())[:6])
    name, number = base, 2
    while name in names:
        name, number = f"{base}-{number}", number + 1
    case: dict[str, object] = {"name": name, "question": question, "expect": expect}
    if section and expect == ANSWERED:
        case["section"] = section.split(" > ")[-1]
    block = yaml.safe_dump([case], allow_unicode=True, sort_keys=False, width=1_000_000)
    indent = "  " if re.search(r"^  - name:", text, re.MULTILINE) else ""
    lines = [indent + line for line in block.splitlines()]
    path.write_text(text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    load_cases(path)  # still a valid test set
    return name


# -- publishing --------------------------------------------------------------------------------------


def publish(settings: Settings, embedder: Any, staff_set: Path) -> tuple[bool, str]:
    """The ingest ``python ingest.py --gate <staff_set>`` runs: (published or up to date, its report)."""
    from ..answering.triage import load_rules
    from ..evaluation.evalset import make_gate
    from ..wiring import reindex

    lines: list[str] = []
    load_rules(settings.corpus_dir)  # a broken rules file stops here, before anything is written
    gate = make_gate(staff_set, settings, embedder=embedder)
    report = reindex(settings, embedder=embedder, gate=gate, log=lines.append)
    return not report.refused, "\n".join([*lines, report.summary()])


# -- the tab -----------------------------------------------------------------------------------------


class ReviewHandlers:
    """What the Review tab's buttons do; each signs the member of staff in first (StaffHandlers)."""

    def __init__(self, staff: Any, queue: ReviewLog | None, staff_set: Path) -> None:
        self.staff = staff
        self.queue = queue
        self.staff_set = staff_set
        self.assistant: Assistant = staff.assistant
        self.settings: Settings = staff.settings
        self._groups: list[Group] = []
        self._publishing = threading.Lock()

    def _teacher(self) -> Teacher:
        return Teacher.from_settings(self.settings, self.assistant.services.embedder)

    def _teach_each(
        self,
        who: str,
        group: Group,
        teach: Callable[[str], Taught],
        describe: Callable[[Taught], str],
        resolution: str,
    ) -> tuple[list[str], list[str]]:
        """Teach each question of ``group``, auditing what was taught; the group leaves the queue when
        any was. Returns the report lines: taught, and refused with the reason."""
        done, refused = [], []
        for question in group.questions:
            try:
                taught = teach(question)
            except AssistantError as exc:
                refused.append(f"- {escape_markdown(question)}: {escape_markdown(str(exc))}")
                continue
            done.append(f"- {escape_markdown(question)}{describe(taught)}")
            self._audit(who, file=str(taught.path), **taught.detail)
        if done and self.queue is not None:
            self.queue.resolve([e.id for e in group.entries], resolution)
        return done, refused

    def _audit(self, who: str, action: str, **detail: object) -> None:
        audit.record(self.settings.audit_log, who, action=action, **detail)

    def show(self, password: str, name: str = "", request: gr.Request | None = None) -> tuple[str, Any, Any]:
        who, denied = self.staff.signed_in(name, password, request)
        if not who:
            return denied, gr.update(choices=[], value=None), gr.update(choices=[], value=None)
        if self.queue is None:
            return (
                "The review queue is off (set ASSISTANT_REVIEW_LOG=on to keep questions for review).",
                gr.update(),
                gr.update(),
            )
        entries = self.queue.open_entries()
        vectors = (
            self.assistant.services.embedder.encode([e.question for e in entries]) if entries else np.zeros((0, 1))
        )
        self._groups = group_entries(entries, vectors)[:MAX_GROUPS]
        choices = [f"{n}. {g.label} ({g.count}×)" for n, g in enumerate(self._groups, start=1)]
        first = self._groups[0] if self._groups else None
        return (
            groups_markdown(self._groups),
            gr.update(choices=choices, value=choices[0] if choices else None),
            gr.update(choices=self._passages(first), value=next(iter(self._passages(first)), None)),
        )

    @staticmethod
    def _passages(group: Group | None) -> list[str]:
        return [f"{c['section']} | {c.get('article', '')}" for c in group.candidates] if group else []

    def _group(self, choice: object) -> Group | None:
        match = re.match(r"^(\d+)\. ", choice) if isinstance(choice, str) else None
        index = int(match.group(1)) - 1 if match else -1
        return self._groups[index] if 0 <= index < len(self._groups) else None

    def passages_for(self, choice: str) -> Any:
        passages = self._passages(self._group(choice))
        return gr.update(choices=passages, value=passages[0] if passages else None)

    def attach(
        self, password: str, choice: str, passage: str, name: str = "", request: gr.Request | None = None
    ) -> str:
        who, denied = self.staff.signed_in(name, password, request)
        if not who:
            return denied
        group = self._group(choice)
        if group is None or not passage:
            return "Choose a group and the passage that answers it first (Show the questions to review)."
        section, _, article = passage.partition(" | ")
        teacher = self._teacher()
        done, refused = self._teach_each(
            who,
            group,
            lambda question: teacher.attach(question, section, article or None),
            lambda taught: f" → {escape_markdown(taught.detail['key'])}",
            f"attached by {who}",
        )
        return _action_report(f"Attached to {escape_markdown(section)}", done, refused, taught_file="corpus/phrasings/")

    def not_covered(
        self, password: str, choice: str, ask: str, name: str = "", request: gr.Request | None = None
    ) -> str:
        who, denied = self.staff.signed_in(name, password, request)
        if not who:
            return denied
        group = self._group(choice)
        if group is None:
            return "Choose a group first (Show the questions to review)."
        teacher = self._teacher()
        done, refused = self._teach_each(
            who,
            group,
            lambda question: teacher.not_covered(question, ask or None),
            lambda taught: f" (topic {escape_markdown(taught.detail['topic'])})",
            f"not covered, by {who}",
        )
        return _action_report("Marked not covered", done, refused, taught_file="corpus/safety/not-covered.yaml")

    def add_to_set(
        self, password: str, choice: str, expect: str, passage: str, name: str = "", request: gr.Request | None = None
    ) -> str:
        who, denied = self.staff.signed_in(name, password, request)
        if not who:
            return denied
        group = self._group(choice)
        if group is None:
            return "Choose a group first (Show the questions to review)."
        try:
            case = add_case(self.staff_set, group.label, expect, passage.partition(" | ")[0] if passage else None)
        except AssistantError as exc:
            return f"**Not added:** {escape_markdown(str(exc))}"
        self._audit(who, action="test-case", file=str(self.staff_set), question=group.label, expect=expect, case=case)
        if self.queue is not None:
            self.queue.resolve([e.id for e in group.entries], f"in the test set, by {who}")
        return f"Added case **{escape_markdown(case)}** (expect {escape_markdown(expect)}) to {escape_markdown(str(self.staff_set))}."

    def publish(self, password: str, name: str = "", request: gr.Request | None = None) -> str:
        who, denied = self.staff.signed_in(name, password, request)
        if not who:
            return denied
        if not self._publishing.acquire(blocking=False):
            return "A publish is already running; please wait for it to finish."
        try:
            published, report = publish(self.settings, self.assistant.services.embedder, self.staff_set)
            if published:
                self.assistant.reload_rules()  # not-covered examples and red flags, read again
        except AssistantError as exc:
            published, report = False, str(exc)
        finally:
            self._publishing.release()
        self._audit(who, action="publish", staff_set=str(self.staff_set), published=published, report=report[-2000:])
        heading = "Published" if published else "**Not published**"
        return f"{heading} (gate: {escape_markdown(str(self.staff_set))}):\n\n{fenced(report)}"


def _action_report(title: str, done: list[str], refused: list[str], taught_file: str) -> str:
    parts = []
    if done:
        parts.append(f"**{title}** (written to {taught_file}; patients see it after Publish):\n" + "\n".join(done))
    if refused:
        parts.append("**Refused, nothing written for these:**\n" + "\n".join(refused))
    return "\n\n".join(parts) or "Nothing to do."


def build_review_tab(
    staff: Any, password: Any, name: Any, staff_set: Path, queue: ReviewLog | None, hidden: dict
) -> None:
    """The Review tab; it signs in with the Staff review tab's name and password fields."""
    handlers = ReviewHandlers(staff, queue, staff_set)
    with gr.Tab("Review", elem_id="review-tab"):
        gr.Markdown(
            "Sign in on the **Staff review** tab first. Questions patients asked that the assistant refused or "
            "answered without a clear winner, grouped by meaning, most frequent first."
        )
        show = gr.Button("Show the questions to review", elem_id="review-show")
        listing = gr.Markdown(elem_id="review-groups")
        group = gr.Dropdown(label="Group", choices=[], elem_id="review-group")
        passage = gr.Dropdown(label="The passage that answers it", choices=[], elem_id="review-passage")
        with gr.Row():
            attach = gr.Button("Attach to this passage", elem_id="review-attach")
        with gr.Row():
            ask = gr.Textbox(label="Who to ask instead (for 'not covered')", elem_id="review-ask", scale=3)
            mark = gr.Button("Mark not covered", elem_id="review-not-covered", scale=1)
        with gr.Row():
            expect = gr.Dropdown(label="Expected status", choices=list(EXPECT_CHOICES), value=ANSWERED, scale=3)
            add = gr.Button("Add to the staff test set", elem_id="review-add-case", scale=1)
        done = gr.Markdown(elem_id="review-done")
        gr.Markdown(f"Changes reach patients only when published; the gate is the staff test set `{staff_set}`.")
        publish_button = gr.Button("Publish", variant="primary", elem_id="review-publish")
        report = gr.Markdown(elem_id="review-report")
    show.click(handlers.show, [password, name], [listing, group, passage], api_name="review_show", **hidden)
    group.change(handlers.passages_for, [group], [passage], api_visibility="private", queue=False)
    attach.click(handlers.attach, [password, group, passage, name], [done], api_name="review_attach", **hidden)
    mark.click(handlers.not_covered, [password, group, ask, name], [done], api_name="review_not_covered", **hidden)
    add.click(
        handlers.add_to_set, [password, group, expect, passage, name], [done], api_name="review_add_case", **hidden
    )
    publish_button.click(
        handlers.publish, [password, name], [report], api_name="review_publish", concurrency_limit=1, **hidden
    )
