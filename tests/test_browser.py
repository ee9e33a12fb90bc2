"""The chat in a real browser (Debian's chromium driven by Playwright), as a patient sees and uses it.

Waits are on elements, never on "network idle": Gradio keeps a connection open. Screenshots go to
test-artifacts/browser/ for a person to look at.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import free_port

from assistant.answering.service import Assistant
from assistant.answering.triage import load_rules
from assistant.articles.corpus import DISCLAIMER, SEEK_HELP, default_safety, load_corpus
from assistant.config import Settings, load_settings
from assistant.edges import page as chat_page
from assistant.edges.feedback import FeedbackStore
from assistant.edges.ui import build_app
from assistant.embeddings import Embedder
from assistant.wiring import build, reindex

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
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
AXE_RESULTS = ROOT / "test-artifacts" / "axe"
# Fetched at install time by `make browser` (npm pack axe-core); never at run time.
AXE_SCRIPTS = sorted(ROOT.glob(".cache/axe-core-*/axe.min.js"))
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
STAFF_PASSWORD = "browser-test staff password"
RED_FLAG = "I suddenly can't control my bladder and my legs feel numb"
CRISIS = "I want to end my life"
NOT_COVERED = "How much does a session cost?"
# Serious or critical axe findings that come from Gradio itself and that no parameter, CSS or small
# script of ours removes: (rule id, CSS selector of the node). Each is listed in docs/accessibility.md
# with its upstream issue, and still counted in the test's report. None at present.
GRADIO_RESIDUE: set[tuple[str, str]] = set()
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
    reindex(settings, embedder=embedder)
    return settings, embedder, tmp


@contextmanager
def serving(assistant: Assistant, settings: Settings, feedback: FeedbackStore | None) -> Iterator[str]:
    app = build_app(assistant, settings, feedback)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **chat_page.assets())
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture(scope="module")
def chat_assistant(indexed) -> Assistant:
    settings, embedder, _ = indexed
    assistant = build(settings, embedder=embedder)
    return assistant


@pytest.fixture(scope="module")
def app_url(indexed, chat_assistant) -> Iterator[str]:
    """The chat as production serves it (edge rules, CSP), with patient feedback on."""
    settings, _, tmp = indexed
    with serving_guarded(chat_assistant, settings, FeedbackStore(tmp / "feedback.sqlite3")) as url:
        yield url


@pytest.fixture(scope="module")
def staff_url(indexed, chat_assistant) -> Iterator[str]:
    settings, _, tmp = indexed
    staff = settings.model_copy(update={"staff_password": STAFF_PASSWORD})
    with serving_guarded(chat_assistant, staff, FeedbackStore(tmp / "staff-feedback.sqlite3")) as url:
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


@contextmanager
def opened(browser, url: str, viewport: dict, dialogs: list[str] | None = None) -> Iterator:
    """A fresh page at ``viewport``, the question box ready; CSP reports collected in ``page.csp``."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.csp = []
    page.on("console", lambda message: "Content Security Policy" in message.text and page.csp.append(message.text))
    if dialogs is not None:
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        page.goto(url)
        page.locator("#question textarea").wait_for()
        yield page
    finally:
        context.close()


def axe_serious(page, name: str) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now; the full results go to test-artifacts/axe/."""
    if not AXE_SCRIPTS:
        pytest.fail("axe-core is not installed: run `make browser` (it fetches axe-core once with npm pack)")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_SCRIPTS[-1]))
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')),
            html: v.nodes.map(n => n.html.slice(0, 300))}))"""
    )
    AXE_RESULTS.mkdir(parents=True, exist_ok=True)
    (AXE_RESULTS / f"{name}.json").write_text(json.dumps(violations, indent=2))
    return [v for v in violations if v["impact"] in ("serious", "critical")]


def assert_no_serious_violations(page, name: str) -> None:
    serious = axe_serious(page, name)
    found = {(v["id"], node) for v in serious for node in v["nodes"]}
    print(f"axe {name}: {len(found)} serious or critical ({len(found & GRADIO_RESIDUE)} documented Gradio residue)")
    assert found <= GRADIO_RESIDUE, json.dumps(serious, indent=2)


def box_of(locator) -> dict:
    box = locator.bounding_box()
    assert box is not None, "not rendered"
    return box


def reply_start_in_view(page) -> tuple[float, float, bool]:
    """(top of the newest reply, top of the conversation's visible area, whether the conversation is scrolled to its end)."""
    return page.evaluate(
        """() => {
            const chat = document.getElementById('chat');
            const messages = [...chat.querySelectorAll('[data-testid="user"], [data-testid="bot"]')];
            let last = -1;
            messages.forEach((m, i) => { if (m.dataset.testid === 'user') last = i; });
            const first = messages[last + 1];
            const log = chat.querySelector('[role=log]');
            let box = first.parentElement;
            while (box !== chat && !(['auto', 'scroll'].includes(getComputedStyle(box).overflowY) && box.scrollHeight > box.clientHeight)) box = box.parentElement;
            return [first.getBoundingClientRect().top, box.getBoundingClientRect().top,
                    box.scrollTop + box.clientHeight >= box.scrollHeight - 2];
        }"""
    )


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


def words(text: str) -> str:
    return " ".join(text.split())


def assert_safety_text_last(page, reply, safety: dict[str, str]) -> None:
    """The whole safety text, word for word, closes the reply, in its own secondary callout."""
    last = reply.last
    callout = last.locator(".safety-callout")
    expect(callout).to_have_count(1)
    expect(callout).to_be_visible()
    expect(callout.locator("strong").first).to_have_text(SEEK_HELP)
    expect(callout.locator("em").last).to_have_text(safety[DISCLAIMER])
    assert words(callout.inner_text()) == words(f"{SEEK_HELP} {safety[SEEK_HELP]} {safety[DISCLAIMER]}")
    chat_text = page.locator("#chat [role=log]").inner_text().strip()
    assert chat_text.endswith(safety[DISCLAIMER]), chat_text[-300:]


# -- tests ------------------------------------------------------------------------------------------


def reviewed_line() -> str:
    """What the chat says of the article's review, from its front matter."""
    article = next(a for a in load_corpus(CORPUS) if a.meta.get("primary"))
    return f"{article.title}, reviewed by the clinic on {chat_page.reviewed_on(article.meta['reviewed'])}"


def test_answer_shows_a_quote_the_article_and_its_review_date_closed_sources_and_the_safety_text_last(
    page, safety, artifacts
):
    reply = send(page, "What are the side effects of dry needling?")
    expect(reply).to_have_count(3)  # answer, sources, safety text

    answer = reply.nth(0)
    expect(answer.locator("blockquote").first).to_contain_text("\u201cWhile generally considered safe")
    expect(answer).to_contain_text("Potential Side Effects")  # the section it is quoted from
    expect(answer).to_contain_text(reviewed_line())  # the article's title and its reviewed date

    sources = reply.nth(1)
    title = sources.locator("details.sources > summary")
    expect(title).to_have_text(re.compile(r"Sources \(\d+\)"))
    expect(sources).to_contain_text(reviewed_line())
    passage = sources.get_by_text("These effects are typically mild", exact=False)
    expect(passage.first).to_be_hidden()  # closed until asked for
    page.screenshot(path=str(artifacts / "answer.png"), full_page=True)
    title.click()
    expect(passage.first).to_be_visible()
    page.screenshot(path=str(artifacts / "answer-sources-open.png"), full_page=True)

    assert_safety_text_last(page, reply, safety)
    # Secondary: smaller than the answer, never hidden or collapsed.
    size = "el => parseFloat(getComputedStyle(el).fontSize)"
    callout = reply.last.locator(".safety-callout")
    assert callout.evaluate(size) < answer.locator("blockquote p").first.evaluate(size)


def test_red_flag_reply_opens_with_a_warning_banner_an_icon_and_an_alert_role(page, safety, artifacts):
    reply = send(page, RED_FLAG)
    first = reply.first
    banner = first.locator(".message-content .urgent-banner").first
    expect(banner).to_have_attribute("role", "alert")  # screen readers announce it at once
    expect(banner).to_contain_text("Possible cauda equina syndrome: please act now.")
    expect(banner.locator("strong").first).to_contain_text("please act now")
    expect(banner).to_contain_text("Go to an emergency department now")
    assert banner.evaluate("el => el === el.closest('.message-content').querySelector(':scope > * > :first-child')")
    # The icon is drawn, not an emoji that needs a font the machine may lack.
    assert "\u26a0" not in first.inner_text()
    icon = box_of(banner.locator("svg.alert-icon"))
    assert icon["width"] >= 16 and icon["height"] >= 16
    colours = banner.evaluate("el => [getComputedStyle(el).backgroundColor, getComputedStyle(el).borderLeftColor]")
    bubble = first.evaluate("el => getComputedStyle(el.closest('.message')).backgroundColor")
    assert colours[0] != bubble and colours[0] not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)"), (colours, bubble)
    assert colours[1] == "rgb(179, 38, 30)", colours  # the warning colour
    expect(first.locator(".help-line")).to_have_count(0)  # the help line is for a crisis
    assert_safety_text_last(page, reply, safety)
    page.screenshot(path=str(artifacts / "red-flag.png"), full_page=True)


def test_a_crisis_reply_shows_the_help_line_taken_from_the_red_flag_content(page, safety):
    reply = send(page, CRISIS)
    banner = reply.first.locator(".urgent-banner")
    expect(banner).to_have_attribute("role", "alert")
    expect(banner).to_have_class(re.compile(r"\btier-crisis\b"))
    crisis = [flag for flag in load_rules(CORPUS).flags if flag.tier == "crisis"]
    line = chat_page.help_line(crisis)
    assert re.search(r"\d", line) and line in " ".join(flag.message for flag in crisis)  # content, not code
    expect(banner.locator(".help-line")).to_have_text(f"Help line: {line}")
    assert_safety_text_last(page, reply, safety)


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


PATIENT_MARKUP = (
    "# My question\n"
    "> quoted words\n"
    "- a list item\n"
    "1. a numbered item\n"
    "see http://example.com/a and www.example.org or mail me@example.com [here](http://example.com)\n"
    "$$x^2$$ and $y$ and `code` **bold** ~~struck~~\n"
    "    indented like code\n"
    "heading underline\n"
    "==="
)


def test_links_headings_lists_and_math_in_the_patients_words_show_as_plain_text(page, safety):
    reply = send(page, PATIENT_MARKUP)
    assert_safety_text_last(page, reply, safety)
    mine = user_messages(page).last
    for tag in (
        "a",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "ul",
        "ol",
        "li",
        "code",
        "pre",
        "strong",
        "del",
        "s",
    ):
        expect(mine.locator(tag)).to_have_count(0)
    expect(mine.locator(".katex, math, svg")).to_have_count(0)
    assert words(mine.inner_text()) == words(PATIENT_MARKUP), mine.inner_text()


def focus_by_tab(page, locator, *, key: str = "Tab", limit: int = 60) -> None:
    """Press ``key`` until ``locator`` has the keyboard focus."""
    for _ in range(limit):
        if locator.evaluate("el => el === document.activeElement"):
            return
        page.keyboard.press(key)
    pytest.fail(f"{key} never reached {locator}")


def test_keyboard_only_ask_open_the_sources_rate_and_comment(page, safety, artifacts):
    box = page.locator("#question textarea")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    focus_by_tab(page, box)
    reply = send(page, "How does dry needling work?", keyboard_only=True)
    expect(reply.first.locator("blockquote").first).to_be_visible()
    assert_safety_text_last(page, reply, safety)
    expect(box).to_be_focused()  # ready for the next question without a mouse

    # The sources open from the keyboard: Shift+Tab back into the chat, then Enter.
    summary = reply.nth(1).locator("details.sources > summary")
    focus_by_tab(page, summary, key="Shift+Tab")
    page.keyboard.press("Enter")
    expect(reply.nth(1).locator("blockquote").first).to_be_visible()

    # Rate it: Tab on to the reply's thumbs-up, then Enter.
    like = page.locator("#chat").get_by_role("button", name="Like", exact=True).last
    focus_by_tab(page, like)
    page.keyboard.press("Enter")
    expect(page.locator("#feedback-notice")).to_contain_text("your rating was saved")

    # Comment on it: Tab to the comment panel, open it with Enter, Tab into the box, type, Enter.
    panel = page.locator("#feedback-comment-panel button.label-wrap")
    focus_by_tab(page, panel)
    page.keyboard.press("Enter")
    comment = page.locator("#feedback-comment textarea")
    focus_by_tab(page, comment)
    page.keyboard.type("Clear, thank you.")
    page.keyboard.press("Enter")
    expect(page.locator("#feedback-notice")).to_contain_text("your comment was added")
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
    assistant = build(tiny, embedder=embedder)
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
    from assistant.edges.web import running, web_app

    port = free_port()
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


# -- on a phone and a desktop ---------------------------------------------------------------------


def test_a_new_reply_scrolls_to_its_own_start_not_its_end(browser, app_url, safety):
    """On a phone each reply is longer than the screen: the patient sees its start, then reads downward."""
    with opened(browser, app_url, PHONE) as page:
        for question in ("What are the side effects of dry needling?", "Who should not have dry needling?"):
            reply = send(page, question)
            assert_safety_text_last(page, reply, safety)
            page.wait_for_timeout(300)  # let any late scroll happen before measuring where the reply sits
            start, visible_top, at_end = reply_start_in_view(page)
            assert visible_top <= start <= visible_top + 60, (start, visible_top)
            assert not at_end, "the conversation was scrolled to the end of the reply"
        assert page.csp == []


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_conversation_and_the_question_box_fit_the_screen(browser, app_url, viewport):
    height = viewport["height"]
    with opened(browser, app_url, viewport) as page:
        for step in ("empty", "answered"):
            if step == "answered":
                send(page, "What are the side effects of dry needling?")
                page.wait_for_timeout(300)
            assert page.evaluate("window.scrollY") == 0, step  # nothing scrolled the page itself
            chat, box = box_of(page.locator("#chat")), box_of(page.locator("#question textarea"))
            assert chat["y"] >= 0 and chat["height"] >= 240, (step, chat)
            assert chat["y"] + chat["height"] <= box["y"], (step, chat, box)
            assert box["y"] + box["height"] <= height, (step, box)  # the question box is on screen
            # Examples and the comment come after the question box, so they never push the chat away.
            for below in ("#examples", "#feedback-comment-panel"):
                assert box_of(page.locator(below))["y"] >= box["y"] + box["height"], (step, below)
            expect(page.locator("#feedback-comment textarea")).to_have_count(0)  # the comment panel is closed


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_axe_finds_no_serious_or_critical_violations_after_an_answer_and_an_urgent_reply(browser, app_url, viewport):
    name = "phone" if viewport is PHONE else "desktop"
    with opened(browser, app_url, viewport) as page:
        assert_no_serious_violations(page, f"chat-empty-{name}")
        reply = send(page, "What are the side effects of dry needling?")
        reply.nth(1).locator("details.sources > summary").click()
        expect(reply.nth(1).locator("blockquote").first).to_be_visible()
        assert_no_serious_violations(page, f"chat-answer-{name}")
        reply = send(page, RED_FLAG)
        expect(reply.first.locator(".urgent-banner")).to_be_visible()
        assert_no_serious_violations(page, f"chat-urgent-{name}")
        assert page.csp == []


def test_axe_finds_no_serious_or_critical_violations_in_the_staff_tab(browser, staff_url):
    with opened(browser, staff_url, DESKTOP) as page:
        page.get_by_role("tab", name="Staff review").click()
        expect(page.get_by_role("tabpanel").get_by_role("textbox").first).to_be_visible()
        assert_no_serious_violations(page, "staff-tab")
        assert page.csp == []


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_screenshots_of_an_answer_an_urgent_reply_and_a_question_not_covered(browser, app_url, viewport, safety):
    """The pictures people look at (``make screenshots`` copies them to docs/screenshots/)."""
    name = "phone" if viewport is PHONE else "desktop"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for kind, question, check in (
        ("answer", "What are the side effects of dry needling?", "blockquote"),
        ("urgent", RED_FLAG, ".urgent-banner"),
        ("not-covered", NOT_COVERED, "p"),
    ):
        with opened(browser, app_url, viewport) as page:
            reply = send(page, question)
            expect(reply.first.locator(check).first).to_be_visible()
            if kind == "not-covered":
                expect(reply.first).to_contain_text("doesn't cover")
            assert_safety_text_last(page, reply, safety)
            page.wait_for_timeout(300)  # the reply's own scroll settles before the picture
            path = SCREENSHOTS / f"{kind}-{name}.png"
            path.unlink(missing_ok=True)
            page.screenshot(path=str(path))
            assert png_size(path) == (viewport["width"], viewport["height"])
