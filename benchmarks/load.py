"""Load test: concurrent ``gradio_client`` sessions asking the chat's ``/ask`` API for a bounded time.

    .venv/bin/python benchmarks/load.py --clients 8 --seconds 20 --report docs/reliability.md --label steady
    .venv/bin/python benchmarks/load.py --clients 16 --seconds 15 --queue-max-size 2 --concurrency-limit 1 \\
        --report docs/reliability.md --label overload
    .venv/bin/python benchmarks/load.py --url http://127.0.0.1:7861/ --clients 4 --seconds 10
    .venv/bin/python benchmarks/load.py --clients 20 --max-requests 5000 --seconds 1500 --warmup 500 \\
        --report docs/reliability.md --label memory
    .venv/bin/python benchmarks/load.py --clients 20 --max-requests 5000 --seconds 1500 --warmup 500 \
        --unbounded-memory --report docs/reliability.md --label memory-unbounded

Without ``--url`` it starts its own app in a child process (a fresh index of corpus/ in a temporary
folder, on a free port on 127.0.0.1) with the queue settings given, and stops it at the end.

Each client is its own session, sends one question at a time and waits for the answer. Every request
ends in exactly one outcome:

- ok: an answer in the JSON contract, ending with the safety text;
- busy: Gradio refused it because the queue was full (the client retries after ``--busy-pause``);
- timeout: no answer within ``--timeout`` seconds (a hang);
- error: anything else, including a reply without the safety text.

With ``--warmup N`` (and an app started here) it also samples the app's resident memory (RSS) and
reports how much it grew between the end of the first N requests and the end of the run. The app
starts as ``app.py`` serves (``assistant.edges.web.prepare_serving_process``: one model thread, memory
bounds), or with ``--unbounded-memory`` with glibc's and Gradio's memory defaults (still one model thread).

``--report`` rewrites only this run's section (by ``--label``) of a Markdown file, with the command
that produced it; ``--json`` prints the summary as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script, without the package installed
    sys.path.insert(0, str(ROOT))

from assistant.config import quiet_environment  # noqa: E402

quiet_environment()  # before gradio, chromadb or transformers are imported

SAFETY_MARK = "When to Seek Professional Help"
STATUSES = {"answered", "not_covered", "urgent", "rejected", "unavailable"}
QUESTIONS = [
    "What is dry needling?",
    "How does dry needling work?",
    "What are the side effects of dry needling?",
    "Can I get an infection from dry needling?",
    "Who should not have dry needling?",
    "How do I choose a qualified dry needling practitioner?",
    "Will dry needling help me move my back more easily?",
    "Is dry needling an alternative to taking pain medication?",
    "Does dry needling hurt?",
    "I suddenly can't control my bladder and my legs feel numb",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent sessions (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send requests (default 10)")
    parser.add_argument("--max-requests", type=int, default=0, help="stop after this many requests in all (0: no cap)")
    parser.add_argument("--url", help="an app already running; default: start one on a free loopback port")
    parser.add_argument("--queue-max-size", type=int, help="queue_max_size of the app started here (default: settings)")
    parser.add_argument(
        "--concurrency-limit", type=int, help="concurrency_limit of the app started here (default: settings)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds before a request counts as hung (default 30)"
    )
    parser.add_argument(
        "--busy-pause", type=float, default=0.25, help="seconds a refused client waits to retry (default 0.25)"
    )
    parser.add_argument(
        "--warmup", type=int, default=0, help="requests before the RSS baseline is taken (default 0: no RSS figures)"
    )
    parser.add_argument("--report", type=Path, help="write this run's figures into this Markdown file")
    parser.add_argument("--label", default="load", help="the section of --report this run owns (default 'load')")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument(
        "--unbounded-memory",
        action="store_true",
        help="start the app without app.py's memory bounds (glibc's and Gradio's defaults), to compare",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # internal: the child app
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.url and (args.queue_max_size is not None or args.concurrency_limit is not None):
        parser.error("--queue-max-size and --concurrency-limit apply only to the app this script starts (no --url)")
    if args.url and (args.warmup or args.unbounded_memory):
        parser.error("--warmup and --unbounded-memory apply only to the app this script starts (no --url)")
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients must be at least 1 and --seconds above 0")
    return args


# -- the app under test (child process) -------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    """Child mode: index corpus/ into a temporary folder, serve it, stop when the parent closes stdin."""
    from assistant.config import load_settings
    from assistant.edges.feedback import FeedbackStore
    from assistant.edges.ui import build_app
    from assistant.edges.web import prepare_serving_process, running, web_app
    from assistant.embeddings import SERVING_THREADS, Embedder, limit_threads
    from assistant.wiring import build, reindex

    if args.unbounded_memory:  # one model thread still, so only the memory bounds differ
        limit_threads(SERVING_THREADS)
    else:
        prepare_serving_process()  # as app.py serves: one model thread, bounded memory
    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        overrides: dict[str, object] = {"index_dir": Path(tmp) / "index", "chroma_url": None, "staff_password": None}
        if args.queue_max_size is not None:
            overrides["queue_max_size"] = args.queue_max_size
        if args.concurrency_limit is not None:
            overrides["concurrency_limit"] = args.concurrency_limit
        settings = load_settings(**overrides)
        embedder = Embedder(settings.embed_model)
        reindex(settings, embedder=embedder)
        assistant = build(settings, embedder=embedder)
        app = web_app(build_app(assistant, settings, FeedbackStore(Path(tmp) / "feedback.sqlite3")), settings)
        with running(app, "127.0.0.1", args.port) as url:  # as production serves it, edge rules included
            print(f"READY {url} {settings.concurrency_limit} {settings.queue_max_size}", flush=True)
            sys.stdin.read()  # the parent closes our stdin (or exits) when it is done
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChildApp:
    """The app in its own process, so the clients' threads do not share its interpreter."""

    def __init__(self, args: argparse.Namespace) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", "--port", str(free_port())]
        if args.queue_max_size is not None:
            cmd += ["--queue-max-size", str(args.queue_max_size)]
        if args.concurrency_limit is not None:
            cmd += ["--concurrency-limit", str(args.concurrency_limit)]
        if args.unbounded_memory:
            cmd.append("--unbounded-memory")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
        try:
            line = lines.get(timeout=180)
        except queue.Empty:
            self.stop()
            raise RuntimeError("the app did not start within 180 s") from None
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"the app failed to start (exit code {self.proc.poll()})")
        _, self.url, concurrency, max_size = line.split()
        self.concurrency_limit, self.queue_max_size = int(concurrency), int(max_size)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()


# -- the clients ------------------------------------------------------------------------------------


@dataclass
class Results:
    started: float = 0.0
    finished: float = 0.0
    latency: dict[str, list[float]] = field(default_factory=lambda: {"ok": [], "busy": [], "timeout": [], "error": []})
    statuses: Counter = field(default_factory=Counter)
    messages: Counter = field(default_factory=Counter)  # the words a refused or failed request came back with
    lock: threading.Lock = field(default_factory=threading.Lock)
    issued: int = 0
    rss: list[tuple[int, float]] = field(default_factory=list)  # (requests done, app RSS in MB)

    def done(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.latency.values())

    def record(self, outcome: str, seconds: float, detail: str = "") -> None:
        with self.lock:
            self.latency[outcome].append(seconds)
            if detail:
                self.messages[f"{outcome}: {detail}"] += 1


def classify(result: object) -> tuple[str, str]:
    if not isinstance(result, dict) or result.get("status") not in STATUSES:
        return "error", f"not the JSON contract: {str(result)[:120]}"
    answer = str(result.get("answer", ""))
    if SAFETY_MARK not in answer or "Disclaimer" not in answer.rsplit(SAFETY_MARK, 1)[-1]:
        return "error", "reply without the safety text"
    return "ok", ""


def client_loop(client, index: int, args: argparse.Namespace, deadline: float, results: Results) -> None:
    from gradio_client.exceptions import AppError

    try:
        from gradio_client.utils import QueueError
    except ImportError:  # moved between gradio_client versions
        QueueError = AppError  # noqa: N806

    turn = index
    while time.monotonic() < deadline:
        with results.lock:
            if args.max_requests and results.issued >= args.max_requests:
                return
            results.issued += 1
        question = QUESTIONS[turn % len(QUESTIONS)]
        turn += 1
        started = time.perf_counter()
        job = client.submit(question, api_name="/ask")
        try:
            result = job.result(timeout=args.timeout)
        except TimeoutError:
            job.cancel()
            results.record("timeout", time.perf_counter() - started, f"no answer in {args.timeout:g} s")
            continue
        except QueueError as exc:
            results.record("busy", time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
            time.sleep(args.busy_pause)
            continue
        except Exception as exc:  # counted and reported, never hidden
            results.record("error", time.perf_counter() - started, f"{type(exc).__name__}: {str(exc)[:160]}")
            continue
        outcome, detail = classify(result)
        results.record(outcome, time.perf_counter() - started, detail)
        if outcome == "ok":
            with results.lock:
                results.statuses[result["status"]] += 1


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process, from /proc (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def sample_rss(pid: int, results: Results, stop: threading.Event) -> None:
    """Every half second: how many requests are done and the app's RSS."""
    while not stop.wait(0.5):
        value = rss_mb(pid)
        if value is not None:
            results.rss.append((results.done(), value))


def run_clients(url: str, args: argparse.Namespace, pid: int | None = None) -> Results:
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in range(args.clients)]  # connect before the clock starts
    results = Results()
    stop = threading.Event()
    if pid is not None and args.warmup:
        threading.Thread(target=sample_rss, args=(pid, results, stop), daemon=True).start()
    results.started = time.monotonic()
    deadline = results.started + args.seconds
    threads = [
        threading.Thread(target=client_loop, args=(client, i, args, deadline, results), daemon=True)
        for i, client in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=args.seconds + args.timeout + 30)
    results.finished = time.monotonic()
    stop.set()
    if pid is not None and args.warmup:
        time.sleep(1.0)  # let the app settle, then the last sample
        value = rss_mb(pid)
        if value is not None:
            results.rss.append((results.done(), value))
    for client in clients:
        try:
            client.close()
        except Exception:  # noqa: S110 - the run is over; a client that will not close changes no figure
            pass
    return results


# -- the summary ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def memory(results: Results, warmup: int) -> dict[str, object] | None:
    """RSS at the end of warm-up and at the end, the growth between them, and a few points on the way."""
    if not warmup or not results.rss:
        return None
    warm = next((mb for done, mb in results.rss if done >= warmup), None)
    end = results.rss[-1][1]
    marks, points = list(range(warmup, results.rss[-1][0] + 1, max(warmup, 1))), []
    for mark in marks:
        point = next((mb for done, mb in results.rss if done >= mark), None)
        if point is not None:
            points.append((mark, round(point, 1)))
    return {
        "warmup_requests": warmup,
        "start_mb": round(results.rss[0][1], 1),
        "warm_mb": None if warm is None else round(warm, 1),
        "end_mb": round(end, 1),
        "max_mb": round(max(mb for _, mb in results.rss), 1),
        "growth_after_warmup_mb": None if warm is None else round(end - warm, 1),
        "by_requests": points,
    }


def summarise(results: Results, args: argparse.Namespace, app: dict[str, object]) -> dict[str, object]:
    wall = results.finished - results.started
    ok, busy = results.latency["ok"], results.latency["busy"]

    def ms(values: list[float], q: float) -> float | None:
        value = percentile(values, q)
        return None if value is None else round(value * 1000, 1)

    return {
        "clients": args.clients,
        "seconds": round(wall, 2),
        "app": app,
        "requests": sum(len(v) for v in results.latency.values()),
        "ok": len(ok),
        "busy": len(busy),
        "timeouts": len(results.latency["timeout"]),
        "errors": len(results.latency["error"]),
        "throughput_per_s": round(len(ok) / wall, 2) if wall > 0 else 0.0,
        "ok_ms": {"p50": ms(ok, 50), "p95": ms(ok, 95), "p99": ms(ok, 99), "max": ms(ok, 100)},
        "busy_ms": {"p50": ms(busy, 50), "p99": ms(busy, 99), "max": ms(busy, 100)},
        "statuses": dict(results.statuses),
        "messages": dict(results.messages.most_common(5)),
        "memory": memory(results, args.warmup),
        "memory_bounds": None if args.url else not args.unbounded_memory,
    }


def command_line(argv: list[str]) -> str:
    shown = [a for a in argv if a != "--json"]
    return shlex.join([".venv/bin/python", "benchmarks/load.py", *shown])


def machine(load_at_start: tuple[float, float, float]) -> str:
    load = " / ".join(f"{x:.2f}" for x in load_at_start)
    return (
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, gradio {version('gradio')}, "
        f"gradio_client {version('gradio_client')}; load average at start (1/5/15 min): {load}"
    )


def section(
    summary: dict[str, object], argv: list[str], host: str, began: datetime, load: tuple[float, float, float]
) -> str:
    def cell(value: object) -> str:
        return "–" if value is None else f"{value:,}" if isinstance(value, int | float) else str(value)

    ok_ms, busy_ms, app = summary["ok_ms"], summary["busy_ms"], summary["app"]
    assert isinstance(ok_ms, dict) and isinstance(busy_ms, dict) and isinstance(app, dict)
    rows = [
        ("clients", summary["clients"]),
        (
            "app concurrency_limit / queue_max_size",
            f"{app.get('concurrency_limit', '?')} / {app.get('queue_max_size', '?')}",
        ),
        ("seconds", summary["seconds"]),
        ("requests", summary["requests"]),
        ("ok (answered in full, safety text last)", summary["ok"]),
        ("busy (refused: queue full)", summary["busy"]),
        ("timeouts (no answer in time)", summary["timeouts"]),
        ("errors", summary["errors"]),
        ("throughput, ok answers per second", summary["throughput_per_s"]),
        ("ok latency p50 / p95 / p99 / max, ms", " / ".join(cell(ok_ms[k]) for k in ("p50", "p95", "p99", "max"))),
        ("busy reply latency p50 / p99 / max, ms", " / ".join(cell(busy_ms[k]) for k in ("p50", "p99", "max"))),
        ("reply statuses", ", ".join(f"{k} {v}" for k, v in sorted(summary["statuses"].items())) or "–"),  # type: ignore[union-attr]
    ]
    mem = summary.get("memory")
    if isinstance(mem, dict):
        from assistant.edges.web import GRADIO_EVENTS_KEPT, MALLOC_ARENAS

        bounds = f"{MALLOC_ARENAS} malloc arenas, Gradio keeps its last {GRADIO_EVENTS_KEPT:,} events"
        rows += [
            ("app memory bounds", bounds if summary.get("memory_bounds") else "none (glibc's and Gradio's defaults)"),
            (
                f"app RSS at start / after {mem['warmup_requests']:,} requests / at the end / max, MB",
                " / ".join(cell(mem[k]) for k in ("start_mb", "warm_mb", "end_mb", "max_mb")),
            ),
            ("RSS growth after warm-up, MB", mem["growth_after_warmup_mb"]),
            ("RSS by requests done (requests: MB)", ", ".join(f"{n:,}: {mb:,}" for n, mb in mem["by_requests"]) or "–"),
        ]
    table = ["| measure | value |", "| --- | --- |"] + [f"| {name} | {cell(value)} |" for name, value in rows]
    messages = summary["messages"]
    assert isinstance(messages, dict)
    said = [f"- {count} × `{text}`" for text, count in messages.items()] or ["- none"]
    return "\n".join(
        [
            f"Command: `{command_line(argv)}`",
            "",
            f"Run {began:%Y-%m-%d %H:%M} UTC against {host}; {machine(load)}.",
            "",
            *table,
            "",
            "What refused or failed requests came back with:",
            "",
            *said,
        ]
    )


def write_report(path: Path, label: str, body: str) -> None:
    """Replace this label's section of ``path`` (or append it), leaving everything else as it was."""
    start, end = f"<!-- load:{label} start -->", f"<!-- load:{label} end -->"
    block = f"{start}\n{body}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Reliability\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.serve:
        return serve(args)
    began, load = datetime.now(UTC), os.getloadavg()  # before this script adds its own load
    child = None if args.url else ChildApp(args)
    try:
        url = args.url or child.url  # type: ignore[union-attr]
        app = (
            {"url": url}
            if child is None
            else {
                "concurrency_limit": child.concurrency_limit,
                "queue_max_size": child.queue_max_size,
            }
        )
        results = run_clients(url, args, pid=None if child is None else child.proc.pid)
    finally:
        if child is not None:
            child.stop()
    summary = summarise(results, args, app)
    host = f"the app at {url}" if args.url else "its own app on 127.0.0.1"
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(section(summary, argv, host, began, load))
    if args.report:
        write_report(args.report, args.label, section(summary, argv, host, began, load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
