"""The HTTP edge around the Gradio app: body limits, closed uploads, security headers, CORS.

Gradio's own app is mounted inside a small FastAPI app, so these rules hold on every route
(the page, ``/gradio_api/queue/*``, ``/gradio_api/run/*``, ``/gradio_api/upload``, files) and
Gradio's permissive CORS handling is replaced by a strict one (a parent app that configures
``CORSMiddleware`` switches Gradio's off).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import gradio as gr
import uvicorn
from fastapi import APIRouter, FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from . import page

if TYPE_CHECKING:
    from ..answering.service import Assistant
    from .feedback import FeedbackStore

log = logging.getLogger("assistant.web")

UPLOAD_PATH = "/gradio_api/upload"
API_PATH = "/api/"  # JSON routes get JSON errors
# A refused body is read and thrown away up to this size, so the client (which is still sending)
# gets the 413 instead of a reset connection; past it the connection is simply closed.
DRAIN_BYTES = 8 * 1024 * 1024
TOO_LARGE = "Request too large: the limit is {limit:,} bytes."
# Gradio's page needs inline scripts and styles; everything else comes from this origin only.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; media-src 'self' blob: data:; connect-src 'self'; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors {frame_ancestors}"
)


def content_security_policy(settings: Settings) -> str:
    return CSP.format(frame_ancestors=settings.frame_ancestors.strip() or "'none'")


def error_response(scope: Scope, message: str, status: int) -> PlainTextResponse | JSONResponse:
    """JSON on the API's routes, plain text elsewhere."""
    if scope["path"].startswith(API_PATH):
        return JSONResponse({"detail": message}, status_code=status)
    return PlainTextResponse(message, status_code=status)


class BodyLimit:
    """Refuse a request body over ``limit`` bytes with 413, before any handler reads it.

    A declared ``Content-Length`` is checked at once; a body without one (chunked) is read up to
    the limit and then replayed, so no more than ``limit`` bytes are ever held. Uploads have their
    own, larger limit, or are refused outright when nothing in the app accepts files.
    """

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int | None) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        if scope["path"].rstrip("/").endswith(UPLOAD_PATH):
            if self.upload_limit is None:
                await PlainTextResponse("Uploads are not accepted.", status_code=404)(scope, receive, send)
                return
            limit = self.upload_limit
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                await error_response(scope, "Bad Content-Length.", 400)(scope, receive, send)
                return
            if too_large:
                if int(declared) <= DRAIN_BYTES:
                    await self._drain(receive, DRAIN_BYTES)
                await self._refuse(scope, receive, send, limit)
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks: list[Message] = []
        size = 0
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                if message.get("more_body", False):
                    await self._drain(receive, DRAIN_BYTES - size)
                await self._refuse(scope, receive, send, limit)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _drain(receive: Receive, budget: int) -> None:
        """Read and discard the rest of a refused body, at most ``budget`` bytes of it."""
        while budget > 0:
            message = await receive()
            if message["type"] != "http.request":
                return
            budget -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        log.warning("refused a request body over %s bytes on %s", limit, scope["path"])
        await error_response(scope, TOO_LARGE.format(limit=limit), 413)(scope, receive, send)


class SecurityHeaders:
    """Content-Security-Policy (with frame-ancestors), and no sniffing or referrer leaks, on every response."""

    def __init__(self, app: ASGIApp, policy: str, frame_ancestors: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", policy.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]
        if frame_ancestors.strip() in ("'none'", ""):
            self.headers.append((b"x-frame-options", b"DENY"))  # for browsers without frame-ancestors
        self.names = {name for name, _ in self.headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in self.names]
                message["headers"] = kept + self.headers
            await send(message)

        await self.app(scope, receive, with_headers)


def web_app(blocks: gr.Blocks, settings: Settings, api: APIRouter | None = None) -> FastAPI:
    """The chat (and the JSON ``api`` beside it) as an ASGI app with every edge rule in place; serve it with uvicorn."""
    from .api import OPENAPI_PATH

    app = FastAPI(
        title="Dry needling for back pain — assistant API",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=OPENAPI_PATH if api is not None else None,
    )
    if api is not None:
        app.include_router(api)  # before Gradio's catch-all mount at "/"
    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    # Present even with no origins: it is what switches Gradio's credentialed CORS off.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials=False,
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
    )
    from .staff import staff_enabled

    uploads = staff_enabled(settings)  # only the staff tab takes files
    app.add_middleware(
        BodyLimit, limit=settings.max_body_bytes, upload_limit=settings.max_upload_bytes if uploads else None
    )
    app.add_middleware(
        SecurityHeaders, policy=content_security_policy(settings), frame_ancestors=settings.frame_ancestors
    )
    blocks.state_session_capacity = settings.session_capacity
    return gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        server_name=settings.host,
        server_port=settings.port,
        show_error=False,
        footer_links=["api"],
        run_history=False,  # never keep patients' questions in the browser's storage
        max_file_size=settings.max_upload_bytes if uploads else 1,
        **page.assets(),  # the chat's CSS and its scroll script (inline: allowed by the CSP above)
    )


def served_app(assistant: Assistant, settings: Settings, feedback: FeedbackStore | None = None) -> FastAPI:
    """What ``app.py`` serves: the chat and the JSON API, sharing one answer budget, behind the edge rules."""
    from .api import gradio_queue_length, json_api
    from .budget import AnswerBudget
    from .ui import build_app

    budget = AnswerBudget(settings.concurrency_limit)
    blocks = build_app(assistant, settings, feedback, budget)
    queued = gradio_queue_length(blocks)
    app = web_app(blocks, settings, json_api(assistant, settings, budget, queued))
    app.state.answer_budget, app.state.chat_queue_length = budget, queued
    return app


class Server(uvicorn.Server):
    """uvicorn without its signal handlers, so it can run in a thread (tests, the load script)."""

    def install_signal_handlers(self) -> None:  # pragma: no cover - nothing to install
        pass


@contextmanager
def running(app: FastAPI, host: str, port: int) -> Iterator[str]:
    """Serve ``app`` in a background thread until the block ends; yields its URL."""
    server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the chat did not start on {host}:{port}")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def serve_forever(app: FastAPI, host: str, port: int) -> None:
    uvicorn.run(app, host=host, port=port, log_level="warning")


# How a serving process runs, unless the environment says otherwise. glibc gives each thread that
# allocates at once an arena of its own (up to 8 per core) and keeps what is freed in each, so the
# answering threads grow the process long after warm-up; two arenas cost no throughput here
# (docs/reliability.md, the memory runs). Gradio keeps a record of each of its last N queued events.
MALLOC_ARENAS = 2
GRADIO_EVENTS_KEPT = 1_000
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def prepare_serving_process() -> bool:
    """One model thread (``embeddings.SERVING_THREADS``), glibc's malloc arenas capped for threads that
    allocate from now on, and Gradio's event records capped. Call it before the model and the app are
    built. Returns whether the arena cap took effect (glibc, MALLOC_ARENA_MAX not set)."""
    from ..embeddings import SERVING_THREADS, limit_threads

    limit_threads(SERVING_THREADS)
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", str(GRADIO_EVENTS_KEPT))
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, MALLOC_ARENAS))
    except (OSError, AttributeError):  # not glibc (musl, another libc): its own allocator's behaviour
        return False


def serve(settings: Settings) -> None:
    """The chat for patients (and the staff tab, when it is on), until the process is stopped."""
    from ..wiring import build
    from .feedback import FeedbackStore
    from .review import with_review

    prepare_serving_process()
    assistant = build(settings)
    feedback = FeedbackStore.from_settings(settings)  # SQLite, or ASSISTANT_DATABASE_URL; schema brought up to date

    assistant, feedback = with_review(assistant, feedback, settings)  # the review queue, when it is on
    app = served_app(assistant, settings, feedback)
    log.warning("serving the chat on http://%s:%s", settings.host, settings.port)
    serve_forever(app, settings.host, settings.port)
