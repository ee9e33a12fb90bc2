"""The whole teach loop in a real browser (Debian's chromium, Playwright), on a copy of the corpus and
index: a patient's question the article answers in other words is refused; staff find it in the
Review tab, attach it to the passage and publish; the same question, asked again in the same running
chat, is answered with that passage as its first quote. No restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, SMALL_GATE, build_index, free_port, make_assistant, make_settings

from assistant.edges import audit
from assistant.edges.review import with_review
from assistant.edges.ui import build_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts" / "review-browser"
QUESTION = "is the kit kept spotless?"  # Infection Risk answers it (hygiene), in words the ranking cannot match
SECTION = "Infection Risk"
PASSWORD = "review browser password"
WAIT_MS = 60_000

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.exists():
    pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
expect = sync_api.expect


@pytest.fixture
def served(corpus_copy, tmp_path, embedder):
    index = tmp_path / "index"
    build_index(corpus_copy, index, embedder)
    staff_set = tmp_path / "staff-set.yaml"
    staff_set.write_text(SMALL_GATE)  # a small gate of its own: what publishing checks is not what these tests test
    settings = make_settings(
        corpus_copy,
        index,
        staff_password=PASSWORD,
        review_log=True,
        feedback_db=tmp_path / "app.sqlite3",
        audit_log=tmp_path / "audit.log",
        staff_set=staff_set,
    )
    chat, _ = with_review(make_assistant(settings, embedder), None, settings)
    app = build_app(chat, settings, None)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", settings, chat
    finally:
        app.close()


def ask(page, question: str):
    """Send ``question`` in the chat; return the newest reply's first message once it is complete."""
    bots = page.locator('#chat [data-testid="bot"]')
    before = bots.filter(has_text="Disclaimer").count()
    page.locator("#question textarea").fill(question)
    page.locator("#question textarea").press("Enter")
    expect(bots.filter(has_text="Disclaimer")).to_have_count(before + 1, timeout=WAIT_MS)
    user = page.locator('#chat [data-testid="user"]').filter(has_text=question).last
    return user.locator("xpath=following::*[@data-testid='bot'][1]")


def test_staff_teach_a_refused_question_and_the_running_chat_answers_it(served):
    url, settings, chat = served
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.goto(url)
            page.locator("#question textarea").wait_for()
            expect(page.locator("#review-notice")).to_contain_text("kept for the clinic's staff to review")

            refused = ask(page, QUESTION)
            expect(refused).to_contain_text("doesn't cover this question")
            version = chat.reader.snapshot().manifest.version

            page.get_by_role("tab", name="Staff review").click()
            name = page.locator("#staff-name textarea, #staff-name input").first
            name.fill("alice")
            expect(name).to_have_value("alice")  # filled once the tab has rendered, not before
            page.locator("#staff-password input, #staff-password textarea").first.fill(PASSWORD)
            page.get_by_role("tab", name="Review", exact=True).click()
            page.locator("#review-show").click()
            expect(page.locator("#review-groups")).to_contain_text(f"1. {QUESTION} — asked 1×", timeout=WAIT_MS)
            expect(page.locator("#review-groups")).to_contain_text(SECTION)

            page.locator("#review-passage input").click()
            page.get_by_role(
                "option", name=f"Risks and Considerations of Dry Needling > {SECTION}", exact=False
            ).first.click()
            page.locator("#review-attach").click()
            expect(page.locator("#review-done")).to_contain_text(
                f"Attached to Risks and Considerations of Dry Needling > {SECTION}", timeout=WAIT_MS
            )
            page.screenshot(path=str(ARTIFACTS / "attached.png"), full_page=True)

            page.locator("#review-publish").click()
            expect(page.locator("#review-report")).to_contain_text(
                f"Published index version {version + 1}", timeout=180_000
            )
            page.screenshot(path=str(ARTIFACTS / "published.png"), full_page=True)

            page.get_by_role("tab", name="Ask", exact=True).click()
            answered = ask(page, QUESTION)
            expect(answered).to_contain_text("risk of infection")
            expect(answered).not_to_contain_text("doesn't cover")
            page.screenshot(path=str(ARTIFACTS / "answered.png"), full_page=True)
        finally:
            browser.close()
    reply = chat.inner.ask(QUESTION)
    assert reply.status == "answered" and reply.quotes[0].section.endswith(SECTION)
    assert reply.index_version == version + 1
    assert [(e["who"], e["action"]) for e in audit.entries(settings.audit_log)] == [
        ("alice", "attach"),
        ("alice", "publish"),
    ]
