"""The web chat: an adapter from Gradio to ``Assistant.ask``. Nothing heavy happens at import time."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import gradio as gr

from .. import wording
from ..answering import compose
from ..answering.compose import UNAVAILABLE, URGENT, Reply
from ..answering.service import Assistant
from ..answering.trace import FlagFound, Trace
from ..answering.triage import RedFlag, triage
from ..config import Settings
from . import page
from .api import reply_json
from .budget import ANSWERING, AnswerBudget
from .feedback import MAX_COMMENT, FeedbackStore

log = logging.getLogger("assistant.ui")

MAX_SHOWN_CHARS = 4000
MAX_KEPT_MESSAGES = 60  # per conversation; older exchanges leave the chat (and the session's memory)
RATING_WINDOW_SECONDS = 60.0


def shown(text: str) -> str:
    """The patient's own words, displayed as plain text (never as HTML, Markdown, a link or math)."""
    text = text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + " …"
    return page.plain(text)


def reply_tier(reply: Reply) -> str:
    """The most serious red-flag tier the reply was raised for."""
    return page.most_serious_tier([found.tier for found in reply.trace.triage])


def reply_messages(
    reply: Reply, reviewed: Mapping[str, str] | None = None, help_line: str = ""
) -> list[dict[str, Any]]:
    """The assistant's turn as chat messages: any urgent banner and the answer, the sources (closed),
    then the safety text, whole, as a secondary callout."""
    first = [page.urgent_banner(reply.alert, reply_tier(reply), help_line)] if reply.alert else []
    if reply.body:
        first.append(reply.body)
    if reply.sources:
        first.append(page.article_line(reply, reviewed or {}))
    messages = [{"role": "assistant", "content": "\n\n".join(first)}]
    if reply.sources:
        messages.append({"role": "assistant", "content": page.sources_block(reply, reviewed or {})})
    messages.append({"role": "assistant", "content": page.safety_callout(reply.safety)})
    return messages


class ChatHandlers:
    """The functions Gradio calls, bound to one assistant."""

    def __init__(
        self,
        assistant: Assistant,
        feedback: FeedbackStore | None,
        ratings_per_minute: int = 10,
        sessions: int = 1000,
        budget: AnswerBudget | None = None,
    ) -> None:
        self.assistant = assistant
        # Shared with the JSON API: one budget of answers computed at once, whichever route asked.
        self.budget = budget
        self.feedback = feedback
        self.ratings_per_minute = ratings_per_minute
        self._sessions = sessions
        self._ratings: OrderedDict[str, deque[float]] = OrderedDict()  # session -> recent rating times
        self._ratings_lock = threading.Lock()

    # -- the chat: accept at once, answer in the queue, say "busy" when the queue is full -----------

    def urgent_flags(self, message: str) -> list[RedFlag]:
        """The red flags in ``message``, by pattern only: no model, no index, no queue."""
        try:
            return triage(message, self.assistant.services.rules).flags()
        except Exception:  # the edge: the queued answer triages again in full
            log.exception("pattern triage failed while accepting a message")
            return []

    def urgent_alert(self, message: str) -> str:
        """The red-flag advice for ``message``, by pattern only."""
        return compose.alert_text(self.urgent_flags(message))

    def help_line(self, flag_ids: list[str]) -> str:
        """The crisis help line (configuration, else the crisis flag's message) for these flags, if any is a crisis."""
        flags = [flag for flag in self.assistant.services.rules.flags if flag.id in set(flag_ids)]
        return page.help_line(flags, self.assistant.settings.help_line)

    def reviewed(self) -> dict[str, str]:
        """Each article's title and the date the clinic last reviewed it, from the active index."""
        try:
            articles = self.assistant.reader.snapshot().manifest.articles
        except Exception:  # the edge: a reply is shown without its dates rather than not at all
            log.exception("could not read the articles' review dates")
            return {}
        return {str(a.get("title")): str(a["reviewed"]) for a in articles.values() if a.get("reviewed")}

    def shown_reply(self, reply: Reply) -> list[dict[str, Any]]:
        """``reply`` as chat messages, with review dates and any crisis help line."""
        return reply_messages(reply, self.reviewed() if reply.sources else {}, self.help_line(reply.trace.flag_ids()))

    def accept(self, message: object, conversation: list, replies: dict) -> tuple[str, list, list, dict, dict]:
        """First, unqueued step: show the patient's message (and any urgent advice) at once.

        Runs outside the answer queue, so it happens even when the queue is full. Returns the
        cleared box, what the chat shows, the conversation so far, the reply records and what the
        answer step needs.
        """
        text = message if isinstance(message, str) else ""
        conversation, replies = self._trimmed(list(conversation or []), dict(replies or {}))
        conversation.append({"role": "user", "content": shown(text)})
        flags = self.urgent_flags(text)
        alert = compose.alert_text(flags)
        ids = [flag.id for flag in flags]
        pending = {"message": text, "alert": alert, "flags": ids}
        if alert:
            tier = page.most_serious_tier([flag.tier for flag in flags])
            banner = page.urgent_banner(alert, tier, self.help_line(ids))
            return "", [*conversation, {"role": "assistant", "content": banner}], conversation, replies, pending
        return "", conversation, conversation, replies, pending

    def answer(self, pending: dict, conversation: list, turns: list[str], replies: dict):
        """Second, queued step: the full reply, streamed message by message after the patient's own."""
        text = str((pending or {}).get("message", ""))
        conversation, turns, replies = list(conversation or []), list(turns or []), dict(replies or {})
        reply = self.safe_ask(text, turns)
        first = len(conversation)
        record = self._record(reply)
        hidden = gr.Dataset(samples=[], visible=False)
        for message_dict in self.shown_reply(reply):
            conversation.append(message_dict)
            yield conversation, conversation, turns, replies, hidden
        for index in range(first, len(conversation)):
            replies[str(index)] = record
        # Questions the article does answer, one click away, when this one was not clear enough.
        offered = gr.Dataset(samples=[[q] for q in reply.suggestions], visible=bool(reply.suggestions))
        yield conversation, conversation, self._remember(turns, text), replies, offered

    def busy_reply(self, message: object, alert: str = "", flags: list[str] | None = None) -> Reply:
        """The reply when the answer queue is full: try again, any urgent advice first, the safety text last."""
        text = message if isinstance(message, str) else ""
        tiers = {flag.id: flag.tier for flag in self.assistant.services.rules.flags}
        trace = Trace(triage=[FlagFound(i, tiers.get(i, "urgent")) for i in flags or ()], busy=True)
        reply = Reply(text, URGENT if alert else UNAVAILABLE, "", alert=alert, body=wording.BUSY, trace=trace)
        return compose.finish(reply, self.assistant.last_safety())

    def busy(self, pending: dict, conversation: list) -> tuple[list, list]:
        """Runs when the answer step was turned away (queue full) or failed: the chat still gets a reply."""
        pending = pending or {}
        conversation = list(conversation or [])
        flags = [str(i) for i in pending.get("flags") or []]
        reply = self.busy_reply(pending.get("message", ""), str(pending.get("alert", "")), flags)
        conversation += self.shown_reply(reply)
        return conversation, conversation

    @staticmethod
    def _trimmed(conversation: list, replies: dict) -> tuple[list, dict]:
        """Keep at most ``MAX_KEPT_MESSAGES``, dropping whole exchanges from the start."""
        if len(conversation) <= MAX_KEPT_MESSAGES:
            return conversation, replies
        drop = len(conversation) - MAX_KEPT_MESSAGES
        while drop < len(conversation) and conversation[drop].get("role") != "user":
            drop += 1
        shifted = {}
        for key, record in replies.items():
            if key.isdigit() and int(key) >= drop:
                shifted[str(int(key) - drop)] = record
        return conversation[drop:], shifted

    def safe_ask(self, message: object, turns: list[str] | None = None) -> Reply:
        try:
            with self.budget.slot() if self.budget else nullcontext():
                return self.assistant.ask(message, list(turns or []))
        except Exception as exc:  # the edge: a patient never sees a traceback
            log.exception("unexpected failure answering a message")
            return self.assistant.unavailable(message, exc)

    def respond(self, message: str, chat: list, turns: list[str], replies: dict):
        message = message if isinstance(message, str) else ""
        chat = list(chat or [])
        turns = list(turns or [])
        replies = dict(replies or {})
        chat.append({"role": "user", "content": shown(message)})
        yield "", chat, turns, replies
        reply = self.safe_ask(message, turns)
        first = len(chat)
        record = self._record(reply)
        for message_dict in self.shown_reply(reply):
            chat.append(message_dict)
            yield "", chat, turns, replies
        oldest = len(chat) - MAX_KEPT_MESSAGES  # the caller keeps the chat; only its last messages are rateable
        replies = {key: value for key, value in replies.items() if key.isdigit() and int(key) >= oldest}
        for index in range(first, len(chat)):
            replies[str(index)] = record
        yield "", chat, self._remember(turns, message), replies

    def _record(self, reply: Reply) -> dict:
        """What a rating of this reply saves, kept in the session until the message leaves the chat."""
        record = {**reply.to_dict(), "reply_id": uuid.uuid4().hex}
        if isinstance(question := record.get("question"), str):
            record["question"] = question[: self.assistant.settings.max_question_chars]
        return record

    def _remember(self, turns: list[str], message: str) -> list[str]:
        """The patient's last few messages, as many as a follow-up question can lean on."""
        if not message.strip():
            return turns
        keep = max(1, self.assistant.settings.history_turns)
        return [*turns, message[: self.assistant.settings.max_question_chars]][-keep:]

    def ask_api(self, question: str) -> dict:
        """One question in, the JSON contract out (the same as ``python -m assistant ask --json``)."""
        return reply_json(self.safe_ask(question), self.assistant.settings.max_question_chars)

    @staticmethod
    def _like(data: object) -> tuple[object, object]:
        """(index, liked) from the like event, or (None, None) when the event carries no usable data."""
        raw = getattr(data, "_data", None)
        if not isinstance(raw, dict):
            return None, None
        index = raw.get("index")
        index = index[0] if isinstance(index, list | tuple) and index else index
        return (index if isinstance(index, int | str) else None), raw.get("liked")

    @classmethod
    def _rated_record(cls, data: object, replies: dict) -> dict | None:
        index, _ = cls._like(data)
        record = (replies or {}).get(str(index)) if index is not None else None
        return record if isinstance(record, dict) and "reply_id" in record else None

    def _allow_rating(self, session: str) -> bool:
        """At most ``ratings_per_minute`` ratings per session; the table of sessions is bounded too."""
        now = time.monotonic()
        with self._ratings_lock:
            recent = self._ratings.pop(session, deque())
            while recent and now - recent[0] > RATING_WINDOW_SECONDS:
                recent.popleft()
            allowed = len(recent) < self.ratings_per_minute
            if allowed:
                recent.append(now)
            self._ratings[session] = recent
            while len(self._ratings) > self._sessions:
                self._ratings.popitem(last=False)
            return allowed

    def rate(self, data: gr.EventData, replies: dict, session: str = "") -> str:
        if self.feedback is None:
            return ""
        record = self._rated_record(data, replies)
        if record is None:
            return "That reply is no longer available to rate."
        if not self._allow_rating(session):
            return "You have rated many answers in the last minute; please wait a moment before rating again."
        _, liked = self._like(data)
        self.feedback.rate(record["reply_id"], record, liked is True or liked == "Like")
        return "Thank you: your rating was saved."

    def rate_and_remember(
        self, data: gr.EventData, replies: dict, last_rated: str | None, request: gr.Request | None = None
    ) -> tuple[str, str | None]:
        """Save a rating and remember which reply it was, so a comment can follow it."""
        session = str(getattr(request, "session_hash", None) or "")
        message = self.rate(data, replies, session)
        record = self._rated_record(data, replies) if self.feedback is not None else None
        saved = message.startswith("Thank you")
        return message, record["reply_id"] if record and saved else last_rated

    def comment(self, text: str, last_rated: str | None) -> tuple[str, str]:
        """Attach a comment to the patient's last rated reply; returns (message, what stays in the box)."""
        if self.feedback is None:
            return "", text
        text = (text or "").strip()
        if not text:
            return "Please type your comment first.", ""
        if not last_rated:
            return "Please rate an answer with 👍 or 👎 first; your comment is added to your last rating.", text
        if not self.feedback.comment(last_rated, text):
            return "That rating is no longer available, so your comment was not saved.", text
        return "Thank you: your comment was added to your last rating.", ""


@dataclass
class ChatTab:
    """The patient's tab: what the events read and write."""

    chatbot: gr.Chatbot
    box: gr.Textbox
    suggested: gr.Dataset
    status: gr.Markdown
    api_chat: gr.Button  # hidden: carries the /chat API; the page uses the steps of ``wire_chat``
    # The conversation lives on the server: the page never sends the whole chat back.
    conversation: gr.State
    turns: gr.State
    replies: gr.State
    pending: gr.State
    # The comment on the last rating, when ratings are kept.
    last_rated: gr.State | None = None
    comment_box: gr.Textbox | None = None
    comment_btn: gr.Button | None = None


def build_app(
    assistant: Assistant,
    settings: Settings,
    feedback: FeedbackStore | None = None,
    budget: AnswerBudget | None = None,
) -> gr.Blocks:
    budget = budget or AnswerBudget(settings.concurrency_limit)
    handlers = ChatHandlers(assistant, feedback, settings.ratings_per_minute, settings.session_capacity, budget)
    # Files Gradio keeps (staff uploads, exports) are deleted once they are a few minutes old.
    cleanup = (max(10, settings.export_ttl_seconds // 5), settings.export_ttl_seconds)
    with gr.Blocks(title="Dry needling for back pain — assistant", fill_height=True, delete_cache=cleanup) as app:
        gr.Markdown(wording.INTRO, elem_id="intro")
        with gr.Tab("Ask", elem_id="ask-tab"):
            tab = chat_tab(settings, feedback, reviewed=getattr(assistant, "review", None) is not None)
        answering = {"concurrency_id": ANSWERING, "concurrency_limit": settings.concurrency_limit}
        wire_chat(tab, handlers, answering)
        from .staff import build_staff_tab, staff_enabled

        if staff_enabled(settings):
            build_staff_tab(assistant, settings, feedback)
        gr.api(handlers.ask_api, api_name="ask", **answering)
    # api_open=False: /gradio_api/run/<name> cannot skip the queue for any queued event.
    app.queue(default_concurrency_limit=settings.concurrency_limit, max_size=settings.queue_max_size, api_open=False)
    return app


def chat_tab(settings: Settings, feedback: FeedbackStore | None, reviewed: bool) -> ChatTab:
    """The conversation, the question box, suggestions, examples and notices."""
    chatbot = gr.Chatbot(
        label="Conversation",
        elem_id="chat",
        height="var(--chat-height)",  # fits the screen: set by the page's CSS (page.CSS)
        autoscroll=False,  # the page's script scrolls a new reply to its start instead
        buttons=["copy"],
        sanitize_html=True,
        allow_tags=False,
        render_markdown=True,
        latex_delimiters=[],  # no math: "$$" a patient types stays text
        feedback_options=("Like", "Dislike") if feedback else (),
        placeholder="Ask a question about dry needling for back pain.",
    )
    box = gr.Textbox(
        label="Your question",
        placeholder="Type your question and press Enter",
        elem_id="question",
        lines=1,
        max_lines=6,
        max_length=max(settings.max_question_chars, settings.max_body_bytes // 8),
        submit_btn="Send",
        autofocus=True,
    )
    suggested = gr.Dataset(
        components=[box], samples=[], label="The article answers these questions", elem_id="suggestions", visible=False
    )
    gr.Examples(wording.EXAMPLES, inputs=box, label="Example questions", elem_id="examples")
    status = gr.Markdown(wording.FEEDBACK_NOTICE if feedback else "", elem_id="feedback-notice")
    if reviewed:  # the review queue is on (assistant/edges/review.py)
        from .review import REVIEW_NOTICE

        gr.Markdown(REVIEW_NOTICE, elem_id="review-notice")
    tab = ChatTab(
        chatbot,
        box,
        suggested,
        status,
        api_chat=gr.Button(visible=False),
        conversation=gr.State([]),
        turns=gr.State([]),
        replies=gr.State({}),
        pending=gr.State({}),
    )
    if feedback is not None:
        tab.last_rated = gr.State(None)
        tab.comment_box, tab.comment_btn = comment_panel()
    return tab


def comment_panel() -> tuple[gr.Textbox, gr.Button]:
    """Closed until wanted, so on a phone it never pushes the conversation away."""
    with gr.Accordion("Comment on your last rating", open=False, elem_id="feedback-comment-panel"), gr.Row():
        box = gr.Textbox(
            label="Add a comment to your last rating (optional)",
            placeholder="What was good or missing? Please don't include your name or contact details.",
            elem_id="feedback-comment",
            max_length=MAX_COMMENT,
            lines=1,
            scale=4,
        )
        return box, gr.Button("Add comment", elem_id="feedback-comment-send", scale=1)


def wire_chat(tab: ChatTab, handlers: ChatHandlers, answering: dict[str, Any]) -> None:
    """A message is shown at once, outside the queue, with any urgent advice found by pattern; then
    answered in the queue; a full queue still gets a reply, with the safety text."""

    def ask_steps(trigger: Any) -> None:
        accepted = trigger(
            handlers.accept,
            [tab.box, tab.conversation, tab.replies],
            [tab.box, tab.chatbot, tab.conversation, tab.replies, tab.pending],
            queue=False,
            api_visibility="private",
        )
        answered = accepted.success(
            handlers.answer,
            [tab.pending, tab.conversation, tab.turns, tab.replies],
            [tab.chatbot, tab.conversation, tab.turns, tab.replies, tab.suggested],
            api_visibility="private",
            **answering,
        )
        answered.failure(
            handlers.busy,
            [tab.pending, tab.conversation],
            [tab.chatbot, tab.conversation],
            queue=False,
            api_visibility="private",
        )

    ask_steps(tab.box.submit)
    ask_steps(
        tab.suggested.click(pick_suggestion, [tab.suggested], [tab.box], queue=False, api_visibility="private").then
    )
    tab.api_chat.click(
        handlers.respond,
        [tab.box, tab.chatbot, tab.turns, tab.replies],
        [tab.box, tab.chatbot, tab.turns, tab.replies],
        api_name="chat",
        api_visibility="undocumented",
        **answering,
    )
    if tab.last_rated is not None and tab.comment_box is not None and tab.comment_btn is not None:
        tab.chatbot.like(
            handlers.rate_and_remember,
            [tab.replies, tab.last_rated],
            [tab.status, tab.last_rated],
            api_visibility="private",
        )
        gr.on(
            [tab.comment_box.submit, tab.comment_btn.click],
            handlers.comment,
            [tab.comment_box, tab.last_rated],
            [tab.status, tab.comment_box],
            api_visibility="private",
        )


def pick_suggestion(sample: object) -> str:
    """A clicked suggestion, as the question to ask."""
    if isinstance(sample, list | tuple) and sample:
        sample = sample[0]
    return sample if isinstance(sample, str) else ""
