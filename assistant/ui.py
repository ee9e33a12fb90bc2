"""The web chat: an adapter from Gradio to ``Assistant.ask``. Nothing heavy happens at import time."""

from __future__ import annotations

import hmac
import logging
import uuid
from typing import Any

import gradio as gr

from .answer import Reply, escape_markdown
from .config import Settings
from .feedback import MAX_COMMENT, FeedbackStore
from .service import Assistant

log = logging.getLogger("assistant.ui")

EXAMPLES = [
    "What is dry needling?",
    "How does dry needling help back pain?",
    "What are the side effects of dry needling?",
    "Who should not have dry needling?",
]
INTRO = (
    "## Dry needling for back pain: questions and answers\n"
    "Answers are quoted from a clinic-reviewed article, with the sections they come from. "
    "This is general information, not a diagnosis. **In an emergency, call your local emergency number.**"
)
FEEDBACK_NOTICE = (
    "Rating an answer with 👍 or 👎 saves that exchange (your question, the answer and its sources) "
    "so the clinic can improve it; nothing that identifies you is stored."
)
MAX_SHOWN_CHARS = 4000


def shown(text: str) -> str:
    """The patient's own words, displayed as plain text (never as HTML or Markdown)."""
    text = text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + " …"
    return escape_markdown(text)


def sources_markdown(reply: Reply) -> str:
    lines = []
    for number, source in enumerate(reply.sources, start=1):
        lines.append(
            f"**{number}. {escape_markdown(source.section)}** — *{escape_markdown(source.article)}* "
            f"(relevance {source.score:.2f})\n\n> " + escape_markdown(source.text).replace("\n", "\n> ")
        )
    return "\n\n".join(lines)


def reply_messages(reply: Reply) -> list[dict[str, Any]]:
    """The assistant's turn as chat messages: answer, collapsible sources, then the safety text."""
    messages = [{"role": "assistant", "content": "\n\n".join(p for p in (reply.alert, reply.body) if p)}]
    if reply.sources:
        messages.append(
            {
                "role": "assistant",
                "content": sources_markdown(reply),
                "metadata": {"title": f"📄 Sources ({len(reply.sources)})", "status": "done"},
            }
        )
    messages.append({"role": "assistant", "content": "---\n\n" + reply.safety})
    return messages


class ChatHandlers:
    """The functions Gradio calls, bound to one assistant."""

    def __init__(self, assistant: Assistant, feedback: FeedbackStore | None) -> None:
        self.assistant = assistant
        self.feedback = feedback

    def safe_ask(self, message: object, turns: list[str] | None = None) -> Reply:
        try:
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
        record = {**reply.to_dict(), "reply_id": uuid.uuid4().hex}
        for message_dict in reply_messages(reply):
            chat.append(message_dict)
            yield "", chat, turns, replies
        for index in range(first, len(chat)):
            replies[str(index)] = record
        if message.strip():
            turns.append(message[: self.assistant.settings.max_question_chars])
        yield "", chat, turns, replies

    def ask_api(self, question: str) -> dict:
        """One question in, the JSON contract out (the same as ``python -m assistant ask --json``)."""
        return self.safe_ask(question).to_dict()

    @staticmethod
    def _rated_record(data: gr.LikeData, replies: dict) -> dict | None:
        index = data.index[0] if isinstance(data.index, list | tuple) else data.index
        return (replies or {}).get(str(index))

    def rate(self, data: gr.LikeData, replies: dict) -> str:
        if self.feedback is None:
            return ""
        record = self._rated_record(data, replies)
        if record is None:
            return "That reply is no longer available to rate."
        liked = data.liked is True or data.liked == "Like"
        self.feedback.rate(record["reply_id"], record, liked)
        return "Thank you: your rating was saved."

    def rate_and_remember(self, data: gr.LikeData, replies: dict, last_rated: str | None) -> tuple[str, str | None]:
        """Save a rating and remember which reply it was, so a comment can follow it."""
        message = self.rate(data, replies)
        record = self._rated_record(data, replies) if self.feedback is not None else None
        return message, record["reply_id"] if record else last_rated

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


def build_app(assistant: Assistant, settings: Settings, feedback: FeedbackStore | None = None) -> gr.Blocks:
    handlers = ChatHandlers(assistant, feedback)
    with gr.Blocks(title="Dry needling for back pain — assistant", fill_height=True) as app:
        gr.Markdown(INTRO)
        with gr.Tab("Ask", elem_id="ask-tab"):
            chatbot = gr.Chatbot(
                label="Conversation",
                elem_id="chat",
                height=520,
                sanitize_html=True,
                allow_tags=False,
                render_markdown=True,
                feedback_options=("Like", "Dislike") if feedback else (),
                placeholder="Ask a question about dry needling for back pain.",
            )
            turns = gr.State([])
            replies = gr.State({})
            box = gr.Textbox(
                label="Your question",
                placeholder="Type your question and press Enter",
                elem_id="question",
                lines=1,
                max_lines=6,
                submit_btn="Send",
                autofocus=True,
            )
            gr.Examples(EXAMPLES, inputs=box, label="Example questions")
            status = gr.Markdown(FEEDBACK_NOTICE if feedback else "", elem_id="feedback-notice")
            if feedback is not None:
                last_rated = gr.State(None)
                with gr.Row():
                    comment_box = gr.Textbox(
                        label="Add a comment to your last rating (optional)",
                        placeholder="What was good or missing? Please don't include your name or contact details.",
                        elem_id="feedback-comment",
                        max_length=MAX_COMMENT,
                        lines=1,
                        scale=4,
                    )
                    comment_btn = gr.Button("Add comment", elem_id="feedback-comment-send", scale=1)
        box.submit(
            handlers.respond,
            [box, chatbot, turns, replies],
            [box, chatbot, turns, replies],
            api_name="chat",
            api_visibility="undocumented",
        )
        if feedback is not None:
            chatbot.like(handlers.rate_and_remember, [replies, last_rated], [status, last_rated], api_visibility="private")
            gr.on(
                [comment_box.submit, comment_btn.click],
                handlers.comment,
                [comment_box, last_rated],
                [status, comment_box],
                api_visibility="private",
            )
        if settings.staff_password:
            from .staff import build_staff_tab

            build_staff_tab(assistant, settings, feedback)
        gr.api(handlers.ask_api, api_name="ask")
    app.queue(default_concurrency_limit=settings.concurrency_limit, max_size=settings.queue_max_size)
    return app


def password_ok(given: object, settings: Settings) -> bool:
    expected = settings.staff_password or ""
    return bool(expected) and isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def serve(settings: Settings) -> None:
    from .service import create_assistant

    assistant = create_assistant(settings)
    feedback = FeedbackStore(settings.feedback_db)
    app = build_app(assistant, settings, feedback)
    log.warning("serving the chat on http://%s:%s", settings.host, settings.port)
    app.launch(server_name=settings.host, server_port=settings.port, show_error=False, footer_links=["api"])
