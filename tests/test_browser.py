"""The chat in a real browser (Debian's chromium driven by Playwright), as a patient sees and uses it.

Waits are on elements, never on "network idle": Gradio keeps a connection open. Screenshots go to
test-artifacts/browser/ for a person to look at.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from assistant.chunking import Chunker
from assistant.config import Settings, load_settings
from assistant.corpus import DISCLAIMER, SEEK_HELP, default_safety, load_corpus
from assistant.embeddings import Embedder
from assistant.feedback import FeedbackStore
from assistant.indexing import ingest
from assistant.service import Assistant, build_services
from assistant.store import open_store
from assistant.ui import build_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CORPUS = ROOT / "corpus"
ANSWER_TIMEOUT_MS = 30_000
HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "![x](http://127.0.0.1:9/x.png) [click me](javascript:alert(1)) <a href=javascript:alert(1)>link</a>",
]

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
expect = sync_api.expect


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def safety() -> dict[str, str]:
    return default_safety(load_corpus(CORPUS))[1]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Embedder, Path]:
    tmp = tmp_path_factory.mktemp("browser")
    settings = load_settings(corpus_dir=CORPUS, index_dir=tmp / "index", chroma_url=None, staff_password=None)
    embedder = Embedder(settings.embed_model)
    store = open_store(settings.index_dir, None)
    try:
        ingest(store, settings.corpus_dir, settings.index_dir, embedder, Chunker(), progress=False)
    finally:
        store.close()
    return settings, embedder, tmp


@contextmanager
def serving(assistant: Assistant, settings: Settings, feedback: FeedbackStore | None) -> Iterator[str]:
    app = build_app(assistant, settings, feedback)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture(scope="module")
def app_url(indexed) -> Iterator[str]:
    settings, embedder, tmp = indexed
    assistant = Assistant(build_services(settings, embedder))
    assistant.warm()
    with serving(assistant, settings, FeedbackStore(tmp / "feedback.sqlite3")) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture
def dialogs() -> list[str]:
    return []


@pytest.fixture
def page(browser, app_url: str, dialogs: list[str]) -> Iterator:
    context = browser.new_context(viewport={"width": 1100, "height": 1000})
    page = context.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(app_url)
    page.locator("#question textarea").wait_for()
    try:
        yield page
    finally:
        context.close()


# -- helpers ----------------------------------------------------------------------------------------


def safety_messages(page):
    """One per reply: the bot message that holds the disclaimer."""
    return page.locator('#chat [data-testid="bot"]').filter(has_text="Disclaimer:")


def send(page, text: str, *, keyboard_only: bool = False):
    """Send a message and wait for the whole reply; returns the bot messages of that reply."""
    replies = safety_messages(page).count()
    box = page.locator("#question textarea")
    if keyboard_only:
        page.keyboard.type(text)
        page.keyboard.press("Enter")
    else:
        box.fill(text)
        box.press("Enter")
    expect(safety_messages(page)).to_have_count(replies + 1, timeout=ANSWER_TIMEOUT_MS)
    expect(box).to_have_value("")
    return page.locator("#chat .message-row").last.locator('[data-testid="bot"]')


def user_messages(page):
    return page.locator('#chat [data-testid="user"]')


def assert_safety_text_last(page, reply, safety: dict[str, str]) -> None:
    last = reply.last
    expect(last.locator("hr")).to_have_count(1)  # set apart from the answer by a rule
    expect(last.locator("strong").first).to_have_text(SEEK_HELP)
    expect(last.locator("em").last).to_have_text(safety[DISCLAIMER])
    chat_text = page.locator("#chat [role=log]").inner_text().strip()
    assert chat_text.endswith(safety[DISCLAIMER]), chat_text[-300:]


# -- tests ------------------------------------------------------------------------------------------


def test_answer_shows_a_quote_collapsed_sources_and_the_safety_text_last(page, safety, artifacts):
    reply = send(page, "What are the side effects of dry needling?")
    expect(reply).to_have_count(3)  # answer, sources, safety text

    answer = reply.nth(0)
    expect(answer.locator("blockquote").first).to_contain_text("\u201cWhile generally considered safe")
    expect(answer).to_contain_text("Potential Side Effects")  # the section it is quoted from

    sources = reply.nth(1)
    title = sources.locator(".title").first
    expect(title).to_have_text(re.compile(r"Sources \(\d+\)"))
    passage = sources.get_by_text("These effects are typically mild", exact=False)
    expect(passage).to_have_count(0)  # collapsed until asked for
    page.screenshot(path=str(artifacts / "answer.png"), full_page=True)
    title.click()
    expect(passage.first).to_be_visible()
    page.wait_for_timeout(500)  # for the screenshot only: the panel opens with an animation
    page.screenshot(path=str(artifacts / "answer-sources-open.png"), full_page=True)

    assert_safety_text_last(page, reply, safety)


def test_red_flag_reply_starts_with_the_urgent_message(page, safety, artifacts):
    reply = send(page, "I suddenly can't control my bladder and my legs feel numb")
    first = reply.first
    expect(first).to_contain_text("Possible cauda equina syndrome: please act now.")
    assert first.inner_text().strip().startswith("\u26a0\ufe0f Possible cauda equina syndrome")
    expect(first.locator("strong").first).to_contain_text("please act now")
    expect(first).to_contain_text("Go to an emergency department now")
    assert_safety_text_last(page, reply, safety)
    page.screenshot(path=str(artifacts / "red-flag.png"), full_page=True)


def test_pasted_html_and_markdown_show_as_text_and_never_run(page, dialogs, safety, artifacts):
    for text in HOSTILE:
        reply = send(page, text)
        assert_safety_text_last(page, reply, safety)
        expect(user_messages(page).last).to_have_text(text)
    page.wait_for_timeout(500)  # an onerror handler would have fired by now
    page.screenshot(path=str(artifacts / "hostile-input.png"), full_page=True)

    assert dialogs == []
    chat = page.locator("#chat")
    expect(chat.locator("script")).to_have_count(0)
    expect(chat.locator("[onerror]")).to_have_count(0)
    expect(chat.locator('img[src="x"], img[src$="/x.png"]')).to_have_count(0)
    expect(chat.locator('a[href^="javascript"]')).to_have_count(0)
    expect(page.locator('[onerror], img[src="x"]')).to_have_count(0)  # nowhere on the page either


def test_keyboard_only_tab_to_the_question_and_enter_to_send(page, safety, artifacts):
    box = page.locator("#question textarea")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(40):
        if box.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    else:
        pytest.fail("Tab never reached the question box")
    reply = send(page, "How does dry needling work?", keyboard_only=True)
    expect(reply.first.locator("blockquote").first).to_be_visible()
    assert_safety_text_last(page, reply, safety)
    expect(box).to_be_focused()  # ready for the next question without a mouse

    # The sources open from the keyboard too: Shift+Tab back into the chat, then Enter.
    title = reply.nth(1).locator(".title").first
    for _ in range(20):
        if title.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Shift+Tab")
    else:
        pytest.fail("Shift+Tab never reached the Sources toggle")
    page.keyboard.press("Enter")
    expect(reply.nth(1).locator("blockquote").first).to_be_visible()
    page.wait_for_timeout(500)  # for the screenshot only: the panel opens with an animation
    page.screenshot(path=str(artifacts / "keyboard.png"), full_page=True)


def test_an_unclear_question_offers_questions_the_article_answers_one_click_away(page, safety, artifacts):
    reply = send(page, "how about my back")
    expect(reply.first).to_contain_text("doesn't cover this question")
    offered = page.locator("#suggestions button")
    expect(offered.first).to_be_visible()
    question = offered.first.inner_text().strip()
    assert question, "a suggestion is a question"
    page.screenshot(path=str(artifacts / "suggestions.png"), full_page=True)
    replies = safety_messages(page).count()
    offered.first.click()
    expect(safety_messages(page)).to_have_count(replies + 1, timeout=ANSWER_TIMEOUT_MS)
    expect(user_messages(page).last).to_have_text(question)
    answer = page.locator("#chat .message-row").last.locator('[data-testid="bot"]')
    expect(answer.first.locator("blockquote").first).to_be_visible()  # the suggestion is answered
    assert_safety_text_last(page, answer, safety)
    expect(page.locator("#suggestions")).to_be_hidden()


def test_question_box_and_conversation_have_accessible_names(page):
    box = page.get_by_role("textbox", name="Your question")
    expect(box).to_have_count(1)
    expect(page.locator("#question textarea")).to_have_attribute("placeholder", re.compile("question"))
    assert box.evaluate("el => el.closest('#question') !== null")

    log = page.locator("#chat [role=log]")
    expect(log).to_have_count(1)
    expect(log).to_have_attribute("aria-label", re.compile(r"\w"))
    expect(log).to_have_attribute("aria-live", "polite")  # new replies are read out
    expect(page.get_by_role("button", name="Send")).to_have_count(1)


def held_assistant(settings: Settings, embedder: Embedder) -> tuple[Settings, Assistant, threading.Event]:
    """One answer at a time, one waiting place, and every answer held until ``release`` is set."""
    tiny = settings.model_copy(update={"concurrency_limit": 1, "queue_max_size": 1})
    assistant = Assistant(build_services(tiny, embedder))
    assistant.warm()
    release = threading.Event()
    answer = assistant.ask

    def held(*args, **kwargs):
        release.wait(timeout=60)
        return answer(*args, **kwargs)

    assistant.ask = held  # type: ignore[method-assign]
    return tiny, assistant, release


def test_a_full_queue_tells_the_patient_to_try_again_and_trying_again_works(
    browser, indexed, dialogs, safety, artifacts
):
    """One request running, one waiting, room for no more: the next patient is told "busy", not left hanging."""

    settings, embedder, _ = indexed
    tiny, assistant, release = held_assistant(settings, embedder)
    with serving(assistant, tiny, None) as url:
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        try:
            page.goto(url)
            box = page.locator("#question textarea")
            box.wait_for()
            with full_queue(url, release, page) as jobs:
                box.fill("What is dry needling?")
                box.press("Enter")
                busy = page.get_by_text("currently busy", exact=False).first
                expect(busy).to_be_visible(timeout=10_000)
                expect(busy).to_contain_text("try again")
                page.wait_for_timeout(600)  # for the screenshot only: the notice slides in
                page.screenshot(path=str(artifacts / "queue-full.png"), full_page=True)

                release.set()
                for job in jobs:
                    assert job.result(timeout=60)["status"] == "answered"
            reply = send(page, "What is dry needling?")  # the same page: no reload needed
            assert_safety_text_last(page, reply, safety)
            assert dialogs == []
        finally:
            release.set()
            context.close()


@contextmanager
def serving_guarded(assistant: Assistant, settings: Settings, feedback: FeedbackStore | None) -> Iterator[str]:
    """The chat as production serves it: the Gradio app mounted behind the HTTP edge rules."""
    from assistant.web import running, web_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with running(web_app(build_app(assistant, settings, feedback), settings), "127.0.0.1", port) as url:
        yield url


@contextmanager
def full_queue(url: str, release: threading.Event, page) -> Iterator[list]:
    """Two API requests: one holds the only worker, the other the only queue place."""
    from gradio_client import Client
    from gradio_client.utils import Status

    others = [Client(url, verbose=False) for _ in range(2)]
    jobs = []
    try:
        # One at a time: two sent together can both land in the one queue place, and one is turned away.
        for client, wanted in zip(others, (Status.PROCESSING, Status.IN_QUEUE), strict=True):
            jobs.append(client.submit("What is dry needling?", api_name="/ask"))
            for _ in range(300):
                if jobs[-1].status().code == wanted:
                    break
                page.wait_for_timeout(100)
            else:
                pytest.fail(f"the queue never filled: {[job.status().code for job in jobs]}")
        yield jobs
    finally:
        release.set()
        for job in jobs:
            try:
                job.result(timeout=60)
            except Exception:  # noqa: S110 - only the patient's page is under test here
                pass
        for client in others:
            client.close()


def test_with_the_queue_full_a_red_flag_message_stays_and_gets_urgent_advice_busy_and_safety_text(
    browser, indexed, dialogs, safety, artifacts
):
    """The queue is full: the patient's message is still shown, a red flag still gets its urgent advice,
    the reply says to try again and ends with the safety text; and the chat works again afterwards."""
    settings, embedder, tmp = indexed
    tiny, assistant, release = held_assistant(settings, embedder)
    with serving_guarded(assistant, tiny, FeedbackStore(tmp / "busy-feedback.sqlite3")) as url:
        context = browser.new_context(viewport={"width": 1100, "height": 1000})
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        try:
            page.goto(url)
            page.locator("#question textarea").wait_for()
            with full_queue(url, release, page):
                red_flag = "I have chest pain after needling"
                reply = send(page, red_flag)
                expect(user_messages(page).last).to_have_text(red_flag)  # the message did not vanish
                expect(reply.first).to_contain_text("Chest pain or sudden breathlessness: please act now.")
                expect(reply.first.locator("strong").first).to_contain_text("please act now")
                expect(reply.first).to_contain_text("Many people are asking right now")
                expect(reply.first).to_contain_text("send your question again")
                assert_safety_text_last(page, reply, safety)
                page.screenshot(path=str(artifacts / "queue-full-red-flag.png"), full_page=True)

                plain = "How long does a session take?"
                reply = send(page, plain)
                expect(user_messages(page).last).to_have_text(plain)
                expect(reply.first).to_contain_text("Many people are asking right now")
                expect(reply.first).not_to_contain_text("please act now")
                assert_safety_text_last(page, reply, safety)
                expect(page.locator("#chat .error")).to_have_count(0)  # no "Error" badge over the chat
                expect(user_messages(page)).to_have_count(2)
            reply = send(page, "What are the side effects of dry needling?")  # room again: a real answer
            expect(reply.first.locator("blockquote").first).to_be_visible()
            assert_safety_text_last(page, reply, safety)
            assert dialogs == []
            assert not [line for line in console if "Content Security Policy" in line]  # the page works under it
        finally:
            release.set()
            context.close()
