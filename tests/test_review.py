"""The review queue (opt-in, scrubbed, expiring) and the Review tab's actions: group, attach, mark not
covered, add to the staff test set, publish through the gate; the running assistant follows."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SMALL_GATE, build_index, make_assistant, make_settings

from assistant.answering.compose import Reply
from assistant.answering.trace import Trace, Weighed
from assistant.edges import audit
from assistant.edges.review import (
    ReviewHandlers,
    ReviewingAssistant,
    ReviewingFeedback,
    add_case,
    group_entries,
    with_review,
)
from assistant.edges.reviewlog import (
    NEAR_SECOND,
    NEAR_THRESHOLD,
    NOT_COVERED_REASON,
    RATED_DOWN,
    Entry,
    ReviewLog,
    review_reason,
    scrub,
)
from assistant.edges.staff import DENIED, StaffHandlers
from assistant.evaluation.cases import load_cases

REFUSED = "is the kit kept spotless?"  # the article answers it (Infection Risk: hygiene), in words ranking cannot match
INFECTION = "Risks and Considerations of Dry Needling > Infection Risk"
PASSWORD = "review test password"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now
        self.ticks = 0.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.ticks


def reply(status: str, scores: list[tuple[str, float]], alert: str = "") -> Reply:
    candidates = [Weighed(f"sentence {i}", s, v, "") for i, (s, v) in enumerate(scores)]
    return Reply("a question?", status, "", index_version=3, alert=alert, trace=Trace(candidates=candidates))


# -- the queue ------------------------------------------------------------------------------------


def test_emails_phone_numbers_and_long_digit_runs_are_removed_and_the_question_capped():
    text = "I'm jo.bloggs+nhs@example.co.uk, call 07700 900123 or +44 (20) 7946-0958, NHS no 9434765919. Does it hurt?"
    clean = scrub(text, 2000)
    assert clean == "I'm [email], call [phone] or [phone], NHS no [phone]. Does it hurt?"
    assert scrub("my code is 12345 and I am 58", 2000) == "my code is [number] and I am 58"
    assert scrub("a" * 3000, 2000) == "a" * 2000


def test_what_is_kept_and_why():
    assert review_reason(reply("not_covered", []), 0.6, 0.05) == NOT_COVERED_REASON
    assert review_reason(reply("answered", [("A", 0.62)]), 0.6, 0.05) == NEAR_THRESHOLD
    assert review_reason(reply("answered", [("A", 0.9), ("B", 0.87)]), 0.6, 0.05) == NEAR_SECOND
    assert review_reason(reply("answered", [("A", 0.9), ("A", 0.89), ("B", 0.8)]), 0.6, 0.05) is None
    assert review_reason(reply("urgent", [], alert="go to A&E"), 0.6, 0.05) is None
    assert review_reason(reply("not_covered", [], alert="go to A&E"), 0.6, 0.05) is None
    assert review_reason(reply("rejected", []), 0.6, 0.05) is None


def test_entries_keep_no_address_or_session_and_expire(tmp_path):
    clock = Clock(datetime(2026, 1, 1, tzinfo=UTC))
    queue = ReviewLog(tmp_path / "review.sqlite3", retention_days=30, clock=clock, monotonic=clock.monotonic)
    assert set(queue.columns()) == {
        "id",
        "created_at",
        "question",
        "reason",
        "status",
        "candidates",
        "index_version",
        "resolution",
    }
    queue.add("old question, mail me at a@b.org", NOT_COVERED_REASON, "not_covered", [], 1)
    clock.now += timedelta(days=20)
    queue.add("newer question", NOT_COVERED_REASON, "not_covered", [{"section": "S", "score": 0.5, "text": "t"}], 2)
    assert [e.question for e in queue.open_entries()] == ["newer question", "old question, mail me at [email]"]
    clock.now += timedelta(days=15)  # the first is now 35 days old
    clock.ticks += 3600  # not yet a day since the last purge: kept until the daily purge
    assert len(queue.open_entries()) == 2
    clock.ticks += 86_400
    assert [e.question for e in queue.open_entries()] == ["newer question"]
    clock.now += timedelta(days=20)  # and at start
    restarted = ReviewLog(tmp_path / "review.sqlite3", retention_days=30, clock=clock, monotonic=clock.monotonic)
    assert restarted.open_entries() == []


def test_patient_replies_and_thumbs_down_feed_the_queue_but_staff_questions_do_not(assistant, tmp_path):
    queue = ReviewLog(tmp_path / "review.sqlite3")
    chat = ReviewingAssistant(assistant, queue)
    assert chat.ask(REFUSED).status == "not_covered"
    chat.ask("What is dry needling?")  # a clear answer: not kept
    chat.ask("I can't feel anything down there")  # urgent: not kept
    StaffHandlers(
        chat.inner, assistant.settings.model_copy(update={"staff_password": PASSWORD}), None, tmp_path
    ).inspect(PASSWORD, "how much is parking?", "")
    (entry,) = queue.open_entries()
    assert (entry.question, entry.reason, entry.status) == (REFUSED, NOT_COVERED_REASON, "not_covered")
    assert entry.index_version == assistant.reader.snapshot().manifest.version
    assert entry.candidates and {"section", "article", "text", "score"} <= set(entry.candidates[0])

    class Ratings:
        def rate(self, reply_id, record, liked, comment=""):
            self.last = (reply_id, liked)

    ratings = ReviewingFeedback(Ratings(), queue)
    record = {**assistant.ask("What is dry needling?").to_dict(), "reply_id": "r1"}
    ratings.rate("r1", record, True)
    assert len(queue.open_entries()) == 1
    ratings.rate("r1", record, False)
    assert ratings.inner.last == ("r1", False)
    newest = queue.open_entries()[0]
    assert (
        newest.reason == RATED_DOWN and newest.question == "What is dry needling?" and newest.candidates[0]["section"]
    )


# -- grouping ---------------------------------------------------------------------------------------


def test_similar_questions_are_grouped_most_frequent_first(embedder):
    asked = [
        "is the equipment clean?", "is everything kept clean?", "is the equipment clean?",
        "can I bring my dog?", "is the equipment clean?", "is the equipment kept clean?",
    ]  # fmt: skip
    entries = [
        Entry(
            i,
            "2026-01-01T00:00:00+00:00",
            q,
            NOT_COVERED_REASON,
            "not_covered",
            [{"section": "S", "score": 0.4 + i / 100, "text": "t"}],
            1,
        )
        for i, q in enumerate(asked)
    ]
    groups = group_entries(entries, embedder.encode(asked))
    assert groups[0].label == "is the equipment clean?" and groups[0].count == 5
    assert set(groups[0].questions) == {
        "is the equipment clean?",
        "is everything kept clean?",
        "is the equipment kept clean?",
    }
    assert groups[-1].questions == ["can I bring my dog?"] and groups[-1].count == 1
    alone = group_entries(entries, np.eye(len(asked)))  # nothing alike: one group per distinct question
    assert [g.count for g in alone] == [3, 1, 1, 1]


def test_a_case_is_appended_to_the_staff_test_set_as_it_is(tmp_path):
    path = tmp_path / "staff-set.yaml"
    shutil.copy(ROOT / "corpus" / "staff-set.yaml", path)
    before = path.read_text()
    name = add_case(path, REFUSED, "answered", INFECTION)
    after = path.read_text()
    assert after.startswith(before.rstrip("\n"))
    case = next(c for c in load_cases(path) if c.name == name)
    assert (case.question, case.expect, case.section) == (REFUSED, "answered", "Infection Risk")
    assert add_case(path, REFUSED, "answered", INFECTION) == name + "-2"


# -- the Review tab's actions, on a copy of the corpus and index ------------------------------------


@pytest.fixture
def review(corpus_copy, tmp_path, embedder):
    index = tmp_path / "index"
    build_index(corpus_copy, index, embedder)
    staff_set = tmp_path / "staff-set.yaml"
    staff_set.write_text(SMALL_GATE)  # a small gate of its own: what publishing checks is not what these tests test
    settings = make_settings(
        corpus_copy, index, staff_password=PASSWORD, audit_log=tmp_path / "audit.log", staff_set=staff_set
    )
    assistant = make_assistant(settings, embedder)
    queue = ReviewLog(tmp_path / "review.sqlite3")
    staff = StaffHandlers(assistant, settings, None, tmp_path)
    return ReviewingAssistant(assistant, queue), ReviewHandlers(staff, queue, staff_set), settings


def test_attach_then_publish_answers_the_question_in_the_running_assistant(review, corpus_copy):
    chat, handlers, settings = review
    assert chat.ask(REFUSED).status == "not_covered"
    assert handlers.show("wrong")[0] == DENIED
    listing, groups, passages = handlers.show(PASSWORD, "alice")
    assert REFUSED in listing and groups["choices"][0].startswith(f"1. {REFUSED}")
    infection = next(p for p in passages["choices"] if p.startswith(INFECTION))
    done = handlers.attach(PASSWORD, groups["value"], infection, "alice")
    assert (
        "Attached to" in done and REFUSED in (corpus_copy / "phrasings" / "dry-needling-for-back-pain.yaml").read_text()
    )
    assert chat.inner.ask(REFUSED).status == "not_covered"  # not before it is published
    report = handlers.publish(PASSWORD, "alice")
    assert report.startswith("Published") and "Published index version 2" in report
    after = chat.ask(REFUSED)
    assert after.status == "answered" and after.quotes[0].section == INFECTION
    assert handlers.show(PASSWORD, "alice")[0].startswith("Nothing to review")
    actions = [(e["who"], e["action"]) for e in audit.entries(settings.audit_log)]
    assert actions == [("alice", "attach"), ("alice", "publish")]


def test_not_covered_then_publish_refuses_the_question_in_the_running_assistant(review, corpus_copy):
    chat, handlers, settings = review
    question = "can the needle spots go red and sore for a day?"
    chat.review.add(question, NEAR_SECOND, "answered", [], 1)
    assert chat.ask(question).status == "answered"
    _, groups, _ = handlers.show(PASSWORD, "bob")
    done = handlers.not_covered(PASSWORD, groups["value"], "the clinic's nurse", "bob")
    assert (
        "Marked not covered" in done
        and "the clinic's nurse" in (corpus_copy / "safety" / "not-covered.yaml").read_text()
    )
    report = handlers.publish(PASSWORD, "bob")
    assert report.startswith("Published")
    assert chat.ask(question).status == "not_covered"


def test_a_red_flag_collision_is_refused_with_the_reason_and_nothing_written(review, corpus_copy):
    chat, handlers, _ = review
    chat.review.add(
        "will my numb bum get better?",
        NOT_COVERED_REASON,
        "not_covered",
        [{"section": INFECTION, "article": "", "score": 0.3, "text": "t"}],
        1,
    )
    before = {p: p.read_bytes() for p in corpus_copy.rglob("*.yaml")}
    _, groups, passages = handlers.show(PASSWORD, "carol")
    done = handlers.attach(PASSWORD, groups["value"], passages["value"], "carol")
    assert "Refused, nothing written" in done and "red flag 'cauda-equina'" in done
    assert {p: p.read_bytes() for p in corpus_copy.rglob("*.yaml")} == before


def test_a_failing_gate_publishes_nothing(review):
    chat, handlers, settings = review
    settings.staff_set.write_text(
        "cases:\n  - name: impossible\n    question: What is dry needling?\n    expect: not_covered\n"
    )
    version = chat.inner.reader.snapshot().manifest.version
    (Path(settings.corpus_dir) / "phrasings" / "dry-needling-for-back-pain.yaml").write_text(
        (Path(settings.corpus_dir) / "phrasings" / "dry-needling-for-back-pain.yaml")
        .read_text()
        .replace(
            "      - what is dry needling?\n",
            "      - what is dry needling?\n      - what's dry needling all about?\n",
            1,
        )
    )
    report = handlers.publish(PASSWORD, "dave")
    assert report.startswith("**Not published**") and "impossible" in report
    assert chat.inner.reader.snapshot().manifest.version == version


def test_patients_are_told_only_when_the_queue_is_on(assistant, tmp_path):
    from assistant.edges.ui import build_app

    on = assistant.settings.model_copy(update={"review_log": True, "feedback_db": tmp_path / "app.sqlite3"})
    chat, _ = with_review(assistant, None, on)
    assert isinstance(chat, ReviewingAssistant)
    assert "review-notice" in str(build_app(chat, on, None).config)
    off, _ = with_review(assistant, None, assistant.settings)
    assert off is assistant and "review-notice" not in str(build_app(off, assistant.settings, None).config)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.sqlite3'}"
    return request.getfixturevalue("postgres")()


def test_the_queue_keeps_resolves_and_expires_alike_on_both_databases(database):
    clock = Clock(datetime(2026, 1, 1, tzinfo=UTC))
    queue = ReviewLog(database, retention_days=30, clock=clock, monotonic=clock.monotonic)
    assert "session" not in " ".join(queue.columns()) and "address" not in " ".join(queue.columns())
    queue.add(
        "call me on 0161 496 0000?", NOT_COVERED_REASON, "not_covered", [{"section": "S", "score": 0.5, "text": "t"}], 4
    )
    clock.now += timedelta(days=40)
    queue.add("is the equipment clean?", NOT_COVERED_REASON, "not_covered", [], 4)
    queue.add("does it hurt?", NEAR_THRESHOLD, "answered", [], 4)
    (newest, middle, oldest) = queue.open_entries()
    assert oldest.question == "call me on [phone]?" and oldest.candidates[0]["score"] == 0.5
    queue.resolve([middle.id], "attached by alice")
    assert [e.question for e in queue.open_entries()] == ["does it hurt?", "call me on [phone]?"]
    assert queue.purge() == 1
    assert [e.question for e in queue.open_entries()] == ["does it hurt?"]
