"""The chat's markup around replies, without a browser: the patient's words as plain text, the urgent
banner and its help line (from content or configuration, never code), the sources and the safety callout."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from markdown_it import MarkdownIt

from assistant.answering.compose import Reply, Source, finish
from assistant.answering.triage import RedFlag, load_rules
from assistant.articles.corpus import DISCLAIMER, SEEK_HELP
from assistant.config import load_settings
from assistant.edges import page
from assistant.edges.ui import ChatHandlers, reply_messages, shown

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
SAFETY = {SEEK_HELP: "See a professional if it gets worse.", DISCLAIMER: "Disclaimer: general information only."}
markdown = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])

MARKUP = [
    "# heading",
    "  ## indented heading",
    "> a quote",
    "- a list",
    "+ a list",
    "* a list",
    "1. numbered",
    "12) numbered",
    "text\n===",
    "text\n---",
    "    four spaces: code",
    "\ta tab: code",
    "`code` and ```fence```",
    "**bold** __bold__ *it* _it_ ~~gone~~",
    "[link](http://example.com) ![img](http://example.com/x.png) [ref][r]\n\n[r]: http://example.com",
    "<http://example.com> <b>bold</b> &lt;b&gt; &amp; &#60;",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "$$x^2$$ and $y$ and \\(z\\)",
    "back\\slash \\# \\\\",
]


def flag(tier: str, message: str, id: str = "f") -> RedFlag:
    return RedFlag(id=id, tier=tier, title="A title", message=message, patterns=(), examples=("x",))


@pytest.mark.parametrize("text", MARKUP)
def test_markdown_in_the_patients_words_renders_as_the_same_plain_text(text):
    html = markdown.render(shown(text))
    assert set(re.findall(r"<([a-z0-9]+)", html)) <= {"p", "br"}, html
    rendered = re.sub(r"<[^>]+>", "", html)
    rendered = rendered.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
    assert rendered.split() == text.split(), (rendered, text)


@pytest.mark.parametrize("text", ["see http://example.com", "HTTPS://x.org/a", "www.example.org", "me@example.com"])
def test_bare_links_and_addresses_in_the_patients_words_cannot_become_links(text):
    echo = shown(text)
    # GFM's autolinks start at "://", "www." and "@": each is broken by an escape.
    assert not re.search(r"(?<!\\)://|(?i:www)\.|(?<!\\)@", echo), echo


def test_ordinary_punctuation_in_the_patients_words_is_left_as_typed():
    assert shown("Is it safe? Yes, it's fine; 50% less pain. (Really!)") == (
        "Is it safe? Yes, it's fine; 50% less pain. (Really!)"
    )


def test_the_help_line_comes_from_the_crisis_flags_own_message():
    crisis = flag("crisis", "Please get help now. Call the Example line on 0800 123 456, any time. Stay safe.")
    assert page.help_line([crisis]) == "Call the Example line on 0800 123 456, any time."
    assert page.help_line([flag("emergency", "Call 999 now.")]) == ""  # only a crisis shows one


def test_a_configured_help_line_is_shown_instead():
    crisis = flag("crisis", "Call the Example line on 0800 123 456.")
    assert page.help_line([crisis], "Text HELP to 85258") == "Text HELP to 85258"


def test_the_projects_crisis_flag_gives_a_help_line_with_a_number():
    crisis = [f for f in load_rules(CORPUS).flags if f.tier == "crisis"]
    line = page.help_line(crisis)
    assert re.search(r"\d{3}", line) and line in " ".join(f.message for f in crisis)


def test_the_urgent_banner_is_an_alert_with_a_drawn_icon_and_no_emoji():
    banner = page.urgent_banner("**\u26a0\ufe0f A title: please act now.** Go now.", "crisis", "Call 0800 <b>")
    assert banner.startswith('<div class="urgent-banner tier-crisis" role="alert"><svg class="alert-icon"')
    assert "\u26a0" not in banner and "**A title: please act now.** Go now." in banner
    assert "**Help line:** Call 0800 \\<b>" in banner  # escaped like every other text
    html = markdown.render(banner)
    assert html.count("<div") == html.count("</div>") == 3


def answered() -> Reply:
    source = Source("An <i>article</i>", "A section", "c1", 0.8, "Passage [x](javascript:alert(1)).")
    reply = Reply("q", "answered", "", sources=[source], body="From the article:\n\n> \u201cquote\u201d")
    return finish(reply, SAFETY)


def test_an_answer_names_its_article_and_review_date_and_its_sources_start_closed():
    first, sources, safety = reply_messages(answered(), {"An <i>article</i>": "2026-11-24"})
    assert first["content"].endswith("Source: *An \\<i>article\\</i>*, reviewed by the clinic on 24 November 2026.")
    assert sources["content"].startswith('<details class="sources"><summary>Sources (1)</summary>')
    assert " open" not in sources["content"].split(">")[0]
    assert "reviewed by the clinic on 24 November 2026" in sources["content"]
    assert "\\[x\\](javascript:alert(1))" in sources["content"]
    assert safety["content"] == page.safety_callout(answered().safety)


def test_the_safety_text_is_whole_and_word_for_word_in_its_callout():
    callout = reply_messages(answered())[-1]["content"]
    assert callout.startswith('<div class="safety-callout">') and callout.endswith("</div>")
    html = markdown.render(callout)
    assert SEEK_HELP in html and SAFETY[SEEK_HELP] in html and SAFETY[DISCLAIMER] in html


def stand_in(help_line: str = "") -> SimpleNamespace:
    """What ``ChatHandlers.accept`` reads of an assistant: the safety rules and the settings."""
    return SimpleNamespace(
        services=SimpleNamespace(rules=load_rules(CORPUS)), settings=load_settings(help_line=help_line)
    )


def test_accepting_a_crisis_message_shows_the_configured_help_line():
    handlers = ChatHandlers(stand_in("Call or text 000 (configured)"), None)  # type: ignore[arg-type]
    _, showing, *_ = handlers.accept("I want to end my life", [], {})
    assert 'class="urgent-banner tier-crisis" role="alert"' in showing[-1]["content"]
    assert "**Help line:** Call or text 000 (configured)" in showing[-1]["content"]


def test_accepting_a_crisis_message_shows_the_help_line_from_the_content_when_none_is_configured():
    handlers = ChatHandlers(stand_in(), None)  # type: ignore[arg-type]
    _, showing, *_ = handlers.accept("I want to end my life", [], {})
    crisis = [f for f in load_rules(CORPUS).flags if f.tier == "crisis"]
    assert f"**Help line:** {page.help_line(crisis)}" in showing[-1]["content"]
