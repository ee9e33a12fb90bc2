"""Who taught or published what, and when: one JSON line per staff action, appended."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

_lock = threading.Lock()


def record(path: Path, who: str, *, action: str, **detail: object) -> dict[str, object]:
    """Append one entry to the audit log at ``path`` (created private, mode 0600) and return it."""
    entry: dict[str, object] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "who": who,
        "action": action,
        **detail,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, ensure_ascii=False) + "\n"
    with _lock:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(line)
    return entry


def entries(path: Path) -> list[dict[str, object]]:
    """Every entry, oldest first; none when the log does not exist yet."""
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        return []
