"""Feedback exports are safe to open in a spreadsheet."""

from assistant.edges.feedback import FeedbackStore


def test_csv_export_never_turns_patient_text_into_a_formula(tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    reply = {"question": '=HYPERLINK("http://x")', "answer": "+1", "status": "answered", "sources": []}
    store.rate("r1", reply, liked=False, comment="@cmd")
    exported = store.to_csv()
    assert "'=HYPERLINK" in exported and "'@cmd" in exported and "\n=" not in exported
