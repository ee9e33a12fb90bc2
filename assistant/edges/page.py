"""How the chat looks in a browser: the markup around a reply, the page's CSS and its one script.

The reply's *text* (``Reply.answer``, the JSON and CLI contract) is Markdown and stays as it is. In the
chat its parts are wrapped in a few fixed tags: an urgent banner (``role="alert"``, an inline SVG icon,
so no emoji font is needed), a sources panel (``<details>``) and the safety text as a secondary callout.
Every piece of text inside them is escaped as before; the tags are constants of this module, and
Gradio's sanitizer still runs over the result. The patient's own words are shown with every Markdown
character escaped, so nothing they type becomes a link, a heading, a quote or math.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date

from ..answering.compose import Reply, escape_markdown
from ..answering.triage import TIERS, RedFlag

# Gradio's sanitizer keeps class, role and the SVG's own shapes (it drops viewBox and aria-*), so the
# icon is drawn in its own 24 px coordinates and named by <title>.
WARNING_ICON = (
    '<svg class="alert-icon" width="24" height="24"><title>Warning</title>'
    '<path fill="currentColor" d="M12 2 1 21h22L12 2zm1 15h-2v-2h2v2zm0-4h-2V9h2v4z"/></svg>'
)
BANNER_OPEN = '<div class="urgent-banner tier-{tier}" role="alert">' + WARNING_ICON + '<div class="urgent-text">'
BANNER_CLOSE = "</div></div>"
HELP_LINE_OPEN = '<div class="help-line">'
SOURCES_OPEN = '<details class="sources"><summary>Sources ({count})</summary>'
SOURCES_CLOSE = "</details>"
SAFETY_OPEN = '<div class="safety-callout">'
SAFETY_CLOSE = "</div>"
DIV_CLOSE = "</div>"
# Every raw tag a chat message of ours may hold: tests check that nothing else ever appears.
OWN_TAGS = ("div", "svg", "title", "path", "details", "summary")

# What could start Markdown, HTML, an entity or math anywhere in a line; and what only can at its start.
_ANYWHERE = re.compile(r"([\\`*_\[\]<>|~#$&@])")
_LINE_START = re.compile(r"^([ \t]*)([-+=]|\d+[.)])", re.MULTILINE)
_AUTOLINK = re.compile(r"(?i)(?<=www)\.|:(?=//)")  # "www." and "://" become links by themselves
_LEADING_SPACE = re.compile(r"^[ \t]+", re.MULTILINE)
_NUMBER = re.compile(r"\d")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def plain(text: str) -> str:
    """The patient's words as Markdown that renders exactly as typed: no link, heading, quote, list or math.

    Every character that could start markup is escaped with a backslash (CommonMark allows it before
    any ASCII punctuation); ordinary punctuation is left alone, so a question reads the same in the
    chat's state. Leading spaces, which would start a code block, become no-break spaces.
    """
    escaped = _ANYWHERE.sub(r"\\\1", text)
    escaped = _LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], escaped)
    escaped = _AUTOLINK.sub(lambda m: "\\" + m.group(0), escaped)
    return _LEADING_SPACE.sub(lambda m: "\u00a0" * len(m.group(0).expandtabs(4)), escaped)


def most_serious_tier(tiers: Sequence[str]) -> str:
    known = [t for t in tiers if t in TIERS]
    return min(known, key=TIERS.index) if known else TIERS[-1]


def help_line(flags: Sequence[RedFlag], configured: str = "") -> str:
    """For a crisis: the help-line line, from configuration or else from the crisis flag's own message.

    The message's sentences that give a number (a phone or text line) are the help line; the clinic
    edits them in ``corpus/safety/red-flags.yaml``.
    """
    crisis = [flag for flag in flags if flag.tier == "crisis"]
    if not crisis:
        return ""
    if configured.strip():
        return configured.strip()
    sentences = [s for flag in crisis for s in _SENTENCE.split(flag.message) if _NUMBER.search(s)]
    return " ".join(dict.fromkeys(sentences))


def urgent_banner(alert: str, tier: str, line: str = "") -> str:
    """The urgent advice (Markdown from ``answer.alert_text``) as a warning banner that is announced."""
    # The icon replaces the emoji the plain text opens each flag with.
    text = alert.replace("**\u26a0\ufe0f ", "**")
    parts = [BANNER_OPEN.format(tier=tier if tier in TIERS else "urgent"), "", text, ""]
    if line:
        parts += [HELP_LINE_OPEN, "", f"**Help line:** {escape_markdown(line)}", "", DIV_CLOSE]
    return "\n".join(parts) + "\n" + BANNER_CLOSE


def reviewed_on(value: object) -> str:
    """A front-matter date as people write it ("24 November 2026"); anything else as given."""
    try:
        day = date.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return f"{day.day} {day:%B %Y}"


def article_line(reply: Reply, reviewed: Mapping[str, str]) -> str:
    """The articles quoted, each with the date the clinic last reviewed it."""
    titles = list(dict.fromkeys(source.article for source in reply.sources))
    named = [
        f"*{escape_markdown(title)}*"
        + (f", reviewed by the clinic on {reviewed_on(reviewed[title])}" if reviewed.get(title) else "")
        for title in titles
    ]
    return "Source: " + "; ".join(named) + "." if named else ""


def sources_block(reply: Reply, reviewed: Mapping[str, str]) -> str:
    """The passages quoted from, closed until the patient opens them."""
    lines = [article_line(reply, reviewed)]
    for number, source in enumerate(reply.sources, start=1):
        lines.append(
            f"**{number}. {escape_markdown(source.section)}** — *{escape_markdown(source.article)}* "
            f"(relevance {source.score:.2f})\n\n> " + escape_markdown(source.text).replace("\n", "\n> ")
        )
    return SOURCES_OPEN.format(count=len(reply.sources)) + "\n\n" + "\n\n".join(lines) + "\n\n" + SOURCES_CLOSE


def safety_callout(safety: str) -> str:
    """The safety text, whole and word for word, set apart as a compact secondary callout."""
    return f"{SAFETY_OPEN}\n\n{safety}\n\n{SAFETY_CLOSE}"


# -- the page ---------------------------------------------------------------------------------------

CSS = """
/* On #chat itself: Gradio rewrites a top-level :root, which would then win over the phone's value. */
#chat { --chat-height: max(300px, calc(100dvh - 300px)); }
#intro h1 { font-size: 1.5rem; }
@media (max-width: 640px) {
  /* A phone: the heading, the tabs and the question box fit around the conversation. */
  #chat { --chat-height: max(240px, calc(100dvh - 330px)); }
  #intro h1 { font-size: 1.1rem; line-height: 1.25; margin: 0 0 0.25rem 0; }
  #intro p { font-size: 0.8rem; line-height: 1.3; margin: 0; }
  #examples button { font-size: 0.8rem; padding: 0.2rem 0.5rem; }
}
#chat .urgent-banner {
  display: flex; gap: 0.6rem; align-items: flex-start;
  background: #fdecea; color: #5c0f0a; border: 2px solid #b3261e; border-left-width: 8px;
  border-radius: 6px; padding: 0.6rem 0.8rem; margin: 0 0 0.6rem 0;
}
#chat .urgent-banner.tier-crisis { background: #fff3e0; border-color: #a33a00; color: #4a1a00; }
#chat .urgent-banner .alert-icon { flex: none; color: #b3261e; margin-top: 0.1rem; }
#chat .urgent-banner.tier-crisis .alert-icon { color: #a33a00; }
#chat .urgent-banner .urgent-text > :first-child { margin-top: 0; }
#chat .urgent-banner .urgent-text > :last-child { margin-bottom: 0; }
#chat .urgent-banner strong { color: inherit; }
#chat .help-line { border-top: 1px solid currentColor; margin-top: 0.5rem; padding-top: 0.4rem; font-size: 1.05em; }
#chat .safety-callout {
  font-size: 0.82em; line-height: 1.4; color: #3d4451;
  background: #f3f4f6; border-left: 3px solid #8a93a3; border-radius: 4px; padding: 0.1rem 0.7rem;
}
#chat .safety-callout p { margin: 0.35rem 0; color: inherit; }
#chat .safety-callout strong, #chat .safety-callout em { color: inherit; }
#chat details.sources { border: 1px solid #c9ced6; border-radius: 6px; padding: 0.3rem 0.6rem; }
#chat details.sources > summary { cursor: pointer; font-weight: 600; }
#chat details.sources > summary:focus-visible { outline: 3px solid #1d4ed8; outline-offset: 2px; }
.dark #chat .urgent-banner { background: #3b0d0a; color: #ffe4e0; border-color: #ff8a80; }
.dark #chat .urgent-banner .alert-icon { color: #ff8a80; }
.dark #chat .urgent-banner.tier-crisis { background: #3a1e00; color: #ffe8cc; border-color: #ffb74d; }
.dark #chat .safety-callout { background: #1f2329; color: #d5d9e0; }
/* Gradio's own colours that fall short of 4.5:1 on white. */
button[role="tab"].selected { color: #a13e00; }
footer .show-api, footer a, .upload-container .or { color: #4b5563; }
"""

# Gradio scrolls a chat to its end on every update; a new reply is scrolled to its own start instead,
# and followed until its safety text has arrived, so the patient reads the answer first, then downward.
SCRIPT = r"""
(() => {
  let doneFor = -1;
  // The conversation's own scrolling box, never the page.
  const scroller = (el, chat) => {
    for (let node = el; node && chat.contains(node); node = node.parentElement) {
      const overflow = getComputedStyle(node).overflowY;
      if ((overflow === "auto" || overflow === "scroll") && node.scrollHeight > node.clientHeight) return node;
    }
    return null;
  };
  const align = () => {
    const chat = document.getElementById("chat");
    if (!chat) return;
    const messages = [...chat.querySelectorAll('[data-testid="user"], [data-testid="bot"]')];
    let lastUser = -1;
    messages.forEach((m, i) => { if (m.dataset.testid === "user") lastUser = i; });
    if (lastUser < 0) return;
    const reply = messages.slice(lastUser + 1);
    const complete = reply.some((m) => m.querySelector(".safety-callout"));
    if (complete && lastUser === doneFor) return;
    const box = scroller(messages[lastUser], chat);
    if (!box) return;
    const target = reply.length ? reply[0] : messages[lastUser];
    // Below the conversation's floating label, if it has one.
    const label = chat.querySelector('[data-testid="block-label"]');
    const top = label ? Math.max(label.getBoundingClientRect().bottom, box.getBoundingClientRect().top) : box.getBoundingClientRect().top;
    box.scrollTop += target.getBoundingClientRect().top - top - 8;
    doneFor = complete ? lastUser : -1;
  };
  // Gradio's file box names itself in ways axe-core rejects: an aria-label on a plain <div>, and an
  // upload button whose label does not contain its visible text. Name them by what they show.
  const repair = () => {
    document.querySelectorAll("div.empty[aria-label]:not([role])").forEach((el) => el.setAttribute("role", "note"));
    document.querySelectorAll("button.upload-container[aria-label]").forEach((el) => el.removeAttribute("aria-label"));
  };
  new MutationObserver(() => requestAnimationFrame(() => { align(); repair(); })).observe(document.documentElement, {
    childList: true, subtree: true, characterData: true,
  });
})();
"""
HEAD = f"<script>{SCRIPT}</script>"


def assets() -> dict[str, str]:
    """What ``launch`` or ``mount_gradio_app`` takes to style the page (Gradio 6 no longer takes it in Blocks)."""
    return {"css": CSS, "head": HEAD}
