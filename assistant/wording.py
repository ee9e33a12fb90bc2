"""Every fixed sentence a patient can read, in one place: the chat's page, and the replies that quote nothing.

Article text, red-flag advice and who to ask for each not-covered topic are the clinic's own content in
``corpus/``; this module holds the rest. The safety text that closes every reply comes from the article.
"""

from __future__ import annotations

# -- the chat page ----------------------------------------------------------------------------------

INTRO = (
    "# Dry needling for back pain: questions and answers\n"
    "Answers are quoted from a clinic-reviewed article, with the sections they come from. "
    "This is general information, not a diagnosis. **In an emergency, call your local emergency number.**"
)
EXAMPLES = [
    "What is dry needling?",
    "How does dry needling help back pain?",
    "What are the side effects of dry needling?",
    "Who should not have dry needling?",
]
FEEDBACK_NOTICE = (
    "Rating an answer with the thumbs-up or thumbs-down button saves that exchange (your question, the answer "
    "and its sources) so the clinic can improve it; nothing that identifies you is stored."
)

# -- replies that quote nothing (the safety text still closes each) ---------------------------------

EMPTY = "Please type a question about dry needling for back pain."
UNAVAILABLE = (
    "The assistant is temporarily unavailable, so I can't look this up in the article "
    "right now. Please try again in a few minutes."
)
FAILED = "Sorry, something went wrong on our side and I can't answer right now. Please try again in a few minutes."
BUSY = (
    "Many people are asking right now, so I can't look this up in the article at the moment. "
    "Please send your question again in a minute. In an emergency, call your local emergency number."
)
NOT_COVERED = (
    "The article *{title}* doesn't cover this question, so I can't answer it from the article. Please ask {ask}."
)
SUGGESTIONS = "It does answer these questions, if one is what you meant:"
ALERT = "**\u26a0\ufe0f {title}: please act now.** {message}"


def too_long(length: int, limit: int) -> str:
    return f"Your message is {length:,} characters long; please keep it under {limit:,} characters and ask one question at a time."
