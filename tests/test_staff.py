"""The staff review tab, driven through gradio_client, and patient feedback (ratings, comments, CSV)."""

from __future__ import annotations

import csv
import io
import json
import textwrap
import threading
import urllib.request
from pathlib import Path

import gradio as gr
import pytest
import yaml
from conftest import free_port
from gradio_client import Client, handle_file

from assistant.answering.service import Assistant
from assistant.edges.feedback import COLUMNS, FeedbackStore
from assistant.edges.staff import DENIED
from assistant.edges.ui import ChatHandlers, build_app

ROOT = Path(__file__).resolve().parent.parent
STAFF_SET = ROOT / "corpus" / "staff-set.yaml"
PASSWORD = "correct horse battery staple"
SEEDED_QUESTION = "Seeded question: does dry needling help sciatica?"


def record(reply_id: str, question: str = "What is dry needling?") -> dict:
    return {
        "reply_id": reply_id,
        "question": question,
        "answer": "From the article: dry needling is a therapeutic technique.",
        "status": "answered",
        "sources": [{"article": "A", "section": "S", "chunk_id": "c1", "score": 0.8, "text": "t"}],
        "index_version": 1,
    }


def like(index: int, liked: bool = True) -> gr.LikeData:
    return gr.LikeData(None, {"index": index, "value": "answer", "liked": liked})


# -- servers --------------------------------------------------------------------------------------


# ``assistant`` (warmed, over a real index of the project's corpus) comes from conftest.py.


@pytest.fixture(scope="module")
def version(assistant) -> int:
    return assistant.reader.snapshot().manifest.version


def launch(assistant: Assistant, password: str | None, feedback: FeedbackStore):
    # Many wrong passwords below come from one address: not slowed or locked out here (tests/test_accounts.py is).
    limits = {"staff_slow_after": 10_000, "staff_lockout_failures": 10_000}
    settings = assistant.settings.model_copy(update={"staff_password": password, **limits})
    app = build_app(assistant, settings, feedback)
    app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    return app, app.local_url


@pytest.fixture(scope="module")
def staff_server(assistant, tmp_path_factory):
    feedback = FeedbackStore(tmp_path_factory.mktemp("staff-feedback") / "feedback.sqlite3")
    feedback.rate("seeded", record("seeded", SEEDED_QUESTION), liked=False, comment="too vague")
    app, url = launch(assistant, PASSWORD, feedback)
    yield Client(url, verbose=False), url, feedback
    app.close()


@pytest.fixture(scope="module")
def public_server(assistant, tmp_path_factory):
    feedback = FeedbackStore(tmp_path_factory.mktemp("public-feedback") / "feedback.sqlite3")
    app, url = launch(assistant, None, feedback)
    yield Client(url, verbose=False), url
    app.close()


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode("utf-8")


def all_endpoints(url: str) -> set[str]:
    """Named endpoints including the undocumented ones (which ``view_api`` leaves out)."""
    return set(json.loads(fetch(url + "gradio_api/info?all_endpoints=true"))["named_endpoints"])


STAFF_CALLS = {
    "/staff_inspect": lambda: ("What is dry needling?", ""),
    "/staff_run_set": lambda: (handle_file(str(STAFF_SET)),),
    "/staff_run_project_set": lambda: (),
    "/staff_feedback": lambda: (),
    "/staff_export": lambda: (),
}


# -- the staff console ----------------------------------------------------------------------------


@pytest.mark.slow
def test_right_password_sees_everything_behind_a_reply(staff_server, version):
    client, _, _ = staff_server
    shown = client.predict(PASSWORD, "Is there a risk of infection?", "", "", api_name="/staff_inspect")
    assert shown.startswith("### Status: answered")
    assert f"Index version **{version}**, answered in **" in shown
    assert "No red flags found." in shown
    assert "| # | Score | Section | Article | Chunk | Quoted |" in shown
    assert "**Decision:** answered" in shown and "| # | Score | Sentence | Matched phrasing |" in shown
    infection_row = next(line for line in shown.splitlines() if "> Infection Risk |" in line)
    assert infection_row.startswith("| 1 | 0.")  # ranked first, with its score
    assert infection_row.endswith("| yes |")  # and quoted
    assert "#### Composed answer" in shown and "there is a risk of infection" in shown
    raw = json.loads(shown.split("```json\n", 1)[1].rsplit("\n```", 1)[0])
    assert raw["status"] == "answered"
    assert raw["trace"]["hits"][0]["section"].endswith("Infection Risk")
    assert raw["trace"]["seconds"] > 0


@pytest.mark.slow
def test_staff_see_the_triage_decision_for_a_red_flag(staff_server):
    client, _, _ = staff_server
    shown = client.predict(PASSWORD, "I can't feel anything down there", "", "", api_name="/staff_inspect")
    assert shown.startswith("### Status: urgent")
    assert "| cauda-equina | emergency |" in shown


@pytest.mark.slow
def test_staff_can_replay_a_follow_up_with_earlier_messages(staff_server):
    client, _, _ = staff_server
    shown = client.predict(PASSWORD, "Does it help?", "What is dry needling?", "", api_name="/staff_inspect")
    assert "**Context from earlier messages:** What is dry needling?" in shown
    assert shown.startswith("### Status: answered")
    alone = client.predict(PASSWORD, "Does it help?", "", "", api_name="/staff_inspect")
    assert "**Context from earlier messages:** none" in alone


@pytest.mark.slow
@pytest.mark.parametrize("endpoint", STAFF_CALLS)
@pytest.mark.parametrize("password", ["wrong", "", PASSWORD.upper(), PASSWORD + " "])
def test_wrong_password_gets_access_denied_and_nothing_else(staff_server, endpoint, password):
    client, _, _ = staff_server
    result = client.predict(password, *STAFF_CALLS[endpoint](), "", api_name=endpoint)
    if isinstance(result, tuple):  # a message and a table or file
        message, payload = result
        assert message == DENIED
        assert payload is None or payload["data"] == []
    else:
        assert result == DENIED
    assert SEEDED_QUESTION not in repr(result)


@pytest.mark.slow
def test_staff_run_the_projects_test_set(staff_server, version):
    client, _, _ = staff_server
    shown = client.predict(PASSWORD, "", api_name="/staff_run_project_set")
    cases = len(yaml.safe_load(STAFF_SET.read_text(encoding="utf-8"))["cases"])
    assert f"**PASSED: {cases} of {cases} cases passed on index version {version}**" in shown
    assert "| FAIL |" not in shown


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "uploaded-set.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.mark.slow
def test_staff_run_an_uploaded_set_and_see_which_case_failed_and_why(staff_server, tmp_path, version):
    client, _, _ = staff_server
    path = write(
        tmp_path,
        """
        cases:
          - name: what-is-it
            question: What is dry needling?
            expect: answered
          - name: infection-wrongly-expected-not-covered
            question: Is there a risk of infection?
            expect: not_covered
        """,
    )
    shown = client.predict(PASSWORD, handle_file(str(path)), "", api_name="/staff_run_set")
    assert f"**FAILED: 1 of 2 cases passed (1 failed) on index version {version}**" in shown
    assert "| 1 | PASS | what-is-it |" in shown
    failed = next(line for line in shown.splitlines() if line.startswith("| 2 |"))
    assert "| FAIL |" in failed and "expected not\\_covered, got answered" in failed


@pytest.mark.slow
def test_staff_upload_of_a_malformed_set_names_the_entry_and_runs_nothing(staff_server, tmp_path):
    client, _, _ = staff_server
    path = write(
        tmp_path,
        "cases:\n  - name: ok\n    question: q\n    expect: answered\n  - name: typo\n    question: q\n    expect: answerd\n",
    )
    shown = client.predict(PASSWORD, handle_file(str(path)), "", api_name="/staff_run_set")
    assert "nothing was run" in shown
    # named by the file staff chose, not by the server's temporary path
    assert "\nuploaded-set.yaml: case 2 ('typo', line 5): 'expect' must be one of" in shown
    assert "PASS" not in shown


@pytest.mark.slow
def test_staff_browse_feedback_and_export_it_as_csv(staff_server):
    client, _, feedback = staff_server
    feedback.rate("fresh", record("fresh", "What does it feel like?"), liked=True)
    message, table = client.predict(PASSWORD, "", api_name="/staff_feedback")
    assert message == "The 2 most recent ratings, newest first."
    assert table["headers"] == list(COLUMNS)
    questions = [row[COLUMNS.index("question")] for row in table["data"]]
    assert questions == ["What does it feel like?", SEEDED_QUESTION]

    message, downloaded = client.predict(PASSWORD, "", api_name="/staff_export")
    assert message == "Your CSV file is ready to download."
    assert Path(downloaded).name.startswith("feedback-") and downloaded.endswith(".csv")
    rows = list(csv.reader(io.StringIO(Path(downloaded).read_text(encoding="utf-8"))))
    assert rows[0] == list(COLUMNS)
    by_question = {row[COLUMNS.index("question")]: row for row in rows[1:]}
    assert by_question[SEEDED_QUESTION][COLUMNS.index("comment")] == "too vague"
    assert by_question[SEEDED_QUESTION][COLUMNS.index("rating")] == "down"
    assert set(by_question) == {SEEDED_QUESTION, "What does it feel like?"}


@pytest.mark.slow
def test_staff_endpoints_are_reachable_but_not_documented(staff_server):
    client, url, _ = staff_server
    documented = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert set(STAFF_CALLS) <= all_endpoints(url)
    assert not set(STAFF_CALLS) & documented
    assert "Staff review" in fetch(url + "config")


@pytest.mark.slow
def test_without_a_password_no_staff_tab_or_endpoint_exists(public_server):
    client, url = public_server
    documented = client.view_api(return_format="dict", print_info=False)
    assert not [name for name in documented["named_endpoints"] if "staff" in name]
    assert not [name for name in all_endpoints(url) if "staff" in name]
    config = fetch(url + "config")
    assert "Staff review" not in config and "staff-password" not in config
    with pytest.raises(ValueError, match="staff_inspect"):
        client.predict(PASSWORD, "What is dry needling?", "", "", api_name="/staff_inspect")


# -- patient feedback -----------------------------------------------------------------------------


@pytest.fixture
def feedback(tmp_path):
    return FeedbackStore(tmp_path / "feedback.sqlite3")


def test_rating_twice_keeps_one_row_with_the_last_rating(feedback):
    handlers = ChatHandlers(None, feedback)  # type: ignore[arg-type]  # rating never asks anything
    replies = {"1": record("r1"), "2": record("r1"), "3": record("r1")}  # one reply, three messages
    handlers.rate_and_remember(like(1, True), replies, None)
    handlers.rate_and_remember(like(1, True), replies, None)  # a double click
    handlers.rate_and_remember(like(3, False), replies, None)
    rows = feedback.rows()
    assert len(rows) == 1
    assert rows[0][COLUMNS.index("rating")] == "down"


def test_concurrent_ratings_and_comments_from_threads_are_all_saved(tmp_path):
    path = tmp_path / "feedback.sqlite3"
    stores = [FeedbackStore(path), FeedbackStore(path)]  # two writers that only SQLite keeps apart
    threads_count, per_thread = 8, 25
    start = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        store = stores[worker % 2]
        start.wait()
        try:
            for n in range(per_thread):
                reply_id = f"w{worker}-{n}"
                store.rate(reply_id, record(reply_id, f"question {reply_id}"), liked=n % 2 == 0)
                assert store.comment(reply_id, f"comment {reply_id}")
        except BaseException as exc:  # noqa: BLE001 - reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    rows = FeedbackStore(path).rows(limit=10_000)
    assert len(rows) == threads_count * per_thread
    comments = {row[COLUMNS.index("comment")] for row in rows}
    assert comments == {f"comment w{w}-{n}" for w in range(threads_count) for n in range(per_thread)}


def test_csv_export_has_the_header_and_every_row_and_no_ip_address(feedback):
    feedback.rate("a", record("a", "first, with a comma"), liked=True, comment='says "hi"')
    feedback.rate("b", record("b", "second\nline"), liked=False)
    rows = list(csv.reader(io.StringIO(feedback.to_csv())))
    assert rows[0] == list(COLUMNS)
    assert not [name for name in rows[0] if "ip" in name.split("_") or "address" in name or "host" in name]
    assert sorted(row[COLUMNS.index("question")] for row in rows[1:]) == ["first, with a comma", "second\nline"]
    assert len(rows) == 3


def test_comment_attaches_to_the_last_rated_reply(feedback):
    handlers = ChatHandlers(None, feedback)  # type: ignore[arg-type]
    replies = {"1": record("first", "Q1"), "4": record("second", "Q2")}
    _, last = handlers.rate_and_remember(like(1), replies, None)
    _, last = handlers.rate_and_remember(like(4, False), replies, last)
    message, box = handlers.comment("  The answer did not say how long it takes.  ", last)
    assert message == "Thank you: your comment was added to your last rating."
    assert box == ""
    comments = {row[COLUMNS.index("question")]: row[COLUMNS.index("comment")] for row in feedback.rows()}
    assert comments == {"Q1": "", "Q2": "The answer did not say how long it takes."}


def test_comment_on_a_reply_that_no_longer_exists_says_so_and_keeps_the_text(feedback):
    handlers = ChatHandlers(None, feedback)  # type: ignore[arg-type]
    message, box = handlers.comment("Still useful?", "a-reply-that-is-gone")
    assert message == "That rating is no longer available, so your comment was not saved."
    assert box == "Still useful?"
    assert feedback.rows() == []


def test_comment_needs_a_rating_first_and_some_text(feedback):
    handlers = ChatHandlers(None, feedback)  # type: ignore[arg-type]
    message, box = handlers.comment("Nice", None)
    assert message.startswith("Please rate an answer with 👍 or 👎 first")
    assert box == "Nice"
    assert handlers.comment("   ", "r1") == ("Please type your comment first.", "")


def test_rating_a_reply_that_is_no_longer_in_the_chat_says_so(feedback):
    handlers = ChatHandlers(None, feedback)  # type: ignore[arg-type]
    message, last = handlers.rate_and_remember(like(7), {"1": record("r1")}, "earlier")
    assert message == "That reply is no longer available to rate."
    assert last == "earlier"  # a comment still goes to the reply rated before
    assert feedback.rows() == []


def comment_box(app: gr.Blocks) -> dict | None:
    config = app.get_config_file()
    return next((c for c in config["components"] if c["props"].get("elem_id") == "feedback-comment"), None)


@pytest.mark.slow
def test_the_chat_offers_a_comment_box_only_when_feedback_is_collected(assistant, feedback):
    with_feedback = build_app(assistant, assistant.settings, feedback)
    box = comment_box(with_feedback)
    assert box is not None and box["type"] == "textbox"
    assert box["props"]["label"].startswith("Add a comment to your last rating")
    listeners = [dep for dep in with_feedback.get_config_file()["dependencies"] if box["id"] in dep["inputs"]]
    assert listeners and listeners[0]["api_visibility"] == "private"
    assert comment_box(build_app(assistant, assistant.settings, None)) is None
