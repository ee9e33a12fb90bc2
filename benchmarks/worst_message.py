"""What the costliest message a patient can send costs, against an ordinary question, in one run.

``.venv/bin/python benchmarks/worst_message.py [--report docs/reliability.md]``: builds the index in a
temporary folder, then times ``Assistant.ask`` on an ordinary question and on messages built to cost
the most: just under the length limit, made of ~110 distinct clauses (each a triage candidate), and a
long story. Each of ``--runs`` rounds asks every message once, in a rotating order, so a busy machine
slows them alike; the medians are compared. Target: the worst costs at most 5x the ordinary one.
With ``--report``, the table replaces the block between the markers in that file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _timing import Stats, timed  # noqa: E402
from run import make_assistant, prepare, reindex  # noqa: E402

START, END = "<!-- worst-message: start -->", "<!-- worst-message: end -->"
TARGET = 5.0


def many_clauses(limit: int) -> str:
    """Distinct short clauses up to ``limit`` characters: each one is a triage candidate."""
    parts, number = [], 0
    while True:
        clause = f"my back hurt on day {number} after lifting box {number * 7}"
        if len(", ".join([*parts, clause])) > limit - 1:
            return ", ".join(parts) + "?"
        parts.append(clause)
        number += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds (default 30)")
    parser.add_argument("--report", type=Path, help="write the table between the markers in this file")
    args = parser.parse_args(argv)
    import torch

    from assistant.edges.web import prepare_serving_process
    from assistant.embeddings import Embedder

    prepare_serving_process()  # as app.py serves: one model thread
    with tempfile.TemporaryDirectory() as folder:
        settings, _ = prepare(Path(folder))
        embedder = Embedder(settings.embed_model)
        reindex(settings, embedder)
        assistant = make_assistant(settings, embedder)
        limit = settings.max_question_chars
        story = (
            "I have had back pain for years since I worked in a warehouse lifting heavy boxes all day. "
            "My physio tried exercises and massage and they helped a little. "
        ) * 20
        messages = {
            "ordinary question": "Is dry needling safe?",
            f"{len(many_clauses(limit)):,} characters, distinct clauses": many_clauses(limit),
            "long story, just under the limit": story[: limit - 30] + " Will dry needling help?",
            "over the limit (refused, still triaged)": story * 3,
        }
        for message in messages.values():
            assistant.ask(message)  # warm caches the way a running app has them
        load = os.getloadavg()
        # Round by round, each message once, in a rotating order: other work on the machine then slows
        # every message alike instead of whichever was being timed while it ran.
        names, samples = list(messages), {name: [] for name in messages}
        for round_ in range(args.runs):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(timed(lambda m=messages[name]: assistant.ask(m)))
        stats = {name: Stats(tuple(values)) for name, values in samples.items()}
        threads = torch.get_num_threads()
    base = stats["ordinary question"].p50
    worst = max(s.p50 for s in stats.values())
    lines = [
        START,
        f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `.venv/bin/python benchmarks/worst_message.py"
        f"{' --report ' + str(args.report) if args.report else ''}` ({args.runs} rounds, each message once a "
        f"round in a rotating order; median). {os.cpu_count()} CPU cores, model threads {threads}; load "
        f"average before timing (1/5/15 min): {' / '.join(f'{x:.2f}' for x in load)}.",
        "",
        "| message | p50 ms | × ordinary |",
        "| --- | ---: | ---: |",
        *[f"| {name} | {s.p50:.1f} | {s.p50 / base:.1f} |" for name, s in stats.items()],
        "",
        f"Worst / ordinary: **{worst / base:.1f}×** (target ≤ {TARGET:.0f}×: {'met' if worst / base <= TARGET else 'MISSED'}).",
        END,
    ]
    text = "\n".join(lines)
    print(text)  # noqa: T201
    if args.report:
        doc = args.report.read_text(encoding="utf-8")
        if START in doc and END in doc:
            doc = doc[: doc.index(START)] + text + doc[doc.index(END) + len(END) :]
        else:
            doc = doc.rstrip("\n") + "\n\n## The costliest message\n\n" + text + "\n"
        args.report.write_text(doc, encoding="utf-8")
    return 0 if worst / base <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
