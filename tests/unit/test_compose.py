"""Composing replies: the safety text closes every one, and article text is shown, never interpreted."""

from __future__ import annotations

from assistant.answering.compose import (
    NOT_COVERED,
    SAFETY_RULE,
    Quote,
    Reply,
    escape_markdown,
    finish,
    not_covered_body,
    quoted_body,
    safety_text,
)

SAFETY = {"When to Seek Professional Help": "See a doctor if it gets worse.", "Disclaimer": "Not medical advice."}


def test_finish_always_ends_with_the_safety_text():
    for reply in (Reply("q", NOT_COVERED, "", body="x"), Reply("q", "urgent", "", alert="act now"), Reply("", "x", "")):
        finished = finish(reply, SAFETY)
        assert finished.answer.endswith(SAFETY_RULE + safety_text(SAFETY))
        assert finished.answer.count("Not medical advice.") == 1


def test_quotes_are_shown_verbatim_with_their_section_and_nothing_in_them_renders():
    quote = Quote("Use <b>ice</b> and *rest* [here](http://x)", "Aftercare", "Needling", "a.md", 0.8)
    body = quoted_body([quote])
    assert "\u201cUse \\<b>ice\\</b> and \\*rest\\* \\[here\\](http://x)\u201d" in body
    assert "*Aftercare*" in body and "*Needling*" in body


def test_not_covered_offers_the_questions_the_article_answers():
    body = not_covered_body("Needling", None, "your physiotherapist", ["What is it?", "Is it safe?"])
    assert "doesn't cover this question" in body and "Please ask your physiotherapist." in body
    assert body.endswith("- What is it?\n- Is it safe?")


def test_escape_markdown_leaves_plain_words_alone():
    assert escape_markdown("plain words, 3 of them.") == "plain words, 3 of them."
