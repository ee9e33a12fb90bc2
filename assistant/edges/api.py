"""The plain JSON API, served beside the chat: ``POST /api/v1/ask`` and ``GET /api/v1/health``.

``/api/v1/ask`` returns the contract of ``python -m assistant ask --json`` (``Reply.to_dict``) and
answers within the chat's one answer budget (``AnswerBudget``): when every slot is busy and the
line of waiting requests is full, it says 429 with ``Retry-After`` instead of queueing more.
The schema is served at ``/api/v1/openapi.json``.
"""

import hmac
import logging
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from ..answering.compose import Reply
from ..answering.service import Assistant
from ..config import Settings
from ..errors import AssistantError
from .budget import AnswerBudget

log = logging.getLogger("assistant.api")

PREFIX = "/api/v1"
OPENAPI_PATH = f"{PREFIX}/openapi.json"
RETRY_AFTER_SECONDS = 5
MAX_HISTORY = 50


# -- the contract ---------------------------------------------------------------------------------


def reply_json(reply: Reply, max_question_chars: int) -> dict[str, object]:
    """A reply as the JSON contract; a long message is refused, not echoed back whole."""
    data = reply.to_dict()
    if isinstance(question := data.get("question"), str):
        data["question"] = question[:max_question_chars]
    return data


def answer_json(assistant: Assistant, question: object, history: Sequence[str] = ()) -> dict[str, object]:
    """Ask, and turn any unexpected failure into the calm "unavailable" reply (with the safety text)."""
    try:
        reply = assistant.ask(question, list(history))
    except Exception as exc:  # the edge: a caller never sees a traceback
        log.exception("unexpected failure answering an API request")
        reply = assistant.unavailable(question, exc)
    return reply_json(reply, assistant.settings.max_question_chars)


# -- the schema -----------------------------------------------------------------------------------


class AskRequest(BaseModel):
    question: str = Field(description="The patient's message.")
    history: list[str] = Field(
        default_factory=list,
        max_length=MAX_HISTORY,
        description="The patient's earlier messages in this conversation, oldest first (a follow-up leans on them).",
    )


class QuoteOut(BaseModel):
    text: str
    article: str
    section: str
    chunk_id: str
    score: float


class SourceOut(BaseModel):
    article: str
    section: str
    chunk_id: str
    score: float
    text: str


class AskResponse(BaseModel):
    """The same object as ``python -m assistant ask --json``."""

    model_config = ConfigDict(extra="allow")
    question: str
    status: Literal["answered", "not_covered", "urgent", "rejected", "unavailable"]
    answer: str = Field(description="The full text a patient sees, safety text included.")
    quotes: list[QuoteOut]
    suggestions: list[str]
    sources: list[SourceOut]
    index_version: int | None


class ArticleOut(BaseModel):
    source: str
    title: str
    reviewed: str | None = Field(description="When the clinic last reviewed the article (front matter).")


class HealthResponse(BaseModel):
    status: Literal["ok"]
    index_version: int
    model: str
    built_at: str
    articles: list[ArticleOut]


class ErrorResponse(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body could not be read (not UTF-8 JSON) or its length is wrong."},
    401: {
        "model": ErrorResponse,
        "description": "A key is required (ASSISTANT_API_KEYS) and none or a wrong one was sent.",
    },
    413: {"model": ErrorResponse, "description": "The body is over the limit (ASSISTANT_MAX_BODY_BYTES)."},
    429: {
        "model": ErrorResponse,
        "description": "Every answer slot is busy and the queue is full; try again after Retry-After seconds.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
    },
}


def error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


# -- the routes -----------------------------------------------------------------------------------


def api_keys(settings: Settings) -> list[str]:
    return [key.strip() for key in settings.api_keys.split(",") if key.strip()]


def key_check(settings: Settings) -> Callable[..., bool]:
    """The dependency that says whether a request carries one of ASSISTANT_API_KEYS (X-API-Key or Bearer)."""
    keys = [key.encode() for key in api_keys(settings)]
    header_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of ASSISTANT_API_KEYS.")
    bearer = HTTPBearer(auto_error=False, description="One of ASSISTANT_API_KEYS.")

    def key_ok(
        given: Annotated[str | None, Depends(header_key)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> bool:
        sent = given or (credentials.credentials if credentials else "")
        encoded = sent.encode("utf-8", "replace")
        return any(hmac.compare_digest(encoded, key) for key in keys)

    def no_key_needed() -> bool:
        return True

    # Without keys the schema declares no security at all, so clients (and schemathesis) send none.
    return key_ok if keys else no_key_needed


def json_api(
    assistant: Assistant, settings: Settings, budget: AnswerBudget, queued: Callable[[], int] = lambda: 0
) -> APIRouter:
    """The API's routes; ``queued`` counts the chat's requests waiting in Gradio's queue."""
    authorise = key_check(settings)
    router = APIRouter(prefix=PREFIX)

    @router.post("/ask", response_model=AskResponse, responses={**ERRORS}, summary="Ask one question")
    async def ask(body: AskRequest, authorised: Annotated[bool, Depends(authorise)]) -> Any:
        if not authorised:
            return error(401, "Missing or unknown API key.", {"WWW-Authenticate": "Bearer"})
        if budget.active >= budget.limit and budget.waiting + queued() >= settings.queue_max_size:
            log.warning("API request turned away: the answer queue is full")
            return error(
                429,
                "Many people are asking right now; please try again shortly.",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        await budget.acquire_async()
        try:
            data = await anyio.to_thread.run_sync(answer_json, assistant, body.question, body.history)
        finally:
            budget.release()
        # Returned as built, not re-serialised through the model: the contract is Reply.to_dict's.
        return JSONResponse(data)

    @router.get(
        "/health",
        response_model=HealthResponse,
        responses={503: {"model": ErrorResponse, "description": "No usable index."}},
        summary="The index serving answers",
    )
    async def health() -> Any:
        try:
            snapshot = await anyio.to_thread.run_sync(assistant.reader.snapshot)
        except AssistantError as exc:
            return error(503, f"No usable index: {exc}")
        manifest = snapshot.manifest
        return {
            "status": "ok",
            "index_version": manifest.version,
            "model": manifest.model,
            "built_at": manifest.built_at,
            "articles": [
                {"source": source, "title": str(info.get("title", source)), "reviewed": info.get("reviewed")}
                for source, info in sorted(manifest.articles.items())
            ],
        }

    return router


def gradio_queue_length(blocks: Any) -> Callable[[], int]:
    """How many chat requests wait in Gradio's queue (0 before the queue exists)."""

    def length() -> int:
        queue = getattr(blocks, "_queue", None)
        return len(queue) if queue is not None else 0

    return length
