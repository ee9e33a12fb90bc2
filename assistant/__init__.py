"""A patient-facing assistant that answers from vetted articles, quotes them, and escalates red flags."""

from .answer import Reply, Source
from .config import Settings, load_settings
from .errors import AssistantError
from .service import Assistant, create_assistant

__all__ = ["Assistant", "AssistantError", "Reply", "Settings", "Source", "create_assistant", "load_settings"]
