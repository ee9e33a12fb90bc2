"""A patient-facing assistant that answers from vetted articles, quotes them, and escalates red flags."""

from .answering.compose import Reply, Source
from .answering.service import Assistant, create_assistant
from .config import Settings, load_settings
from .errors import AssistantError

__all__ = ["Assistant", "AssistantError", "Reply", "Settings", "Source", "create_assistant", "load_settings"]
