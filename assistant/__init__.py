"""A patient-facing assistant that answers from vetted articles, quotes them, and escalates red flags."""

from .answering.compose import Reply, Source
from .answering.service import Assistant
from .config import Settings, load_settings
from .errors import AssistantError
from .wiring import build, reindex

__all__ = ["Assistant", "AssistantError", "Reply", "Settings", "Source", "build", "load_settings", "reindex"]
