"""Command line: ``python -m assistant ask|serve|ingest|eval|eval-abstention|quality|teach|staff-user``. Thin: it parses and prints."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ..config import Settings, load_settings
from ..errors import AssistantError

DEFAULT_KQA = Path("../shared/eval/kqa-patient-questions.jsonl")


def _print(text: str = "", file=None) -> None:  # noqa: ANN001 - a stream
    print(text, file=file or sys.stdout, flush=True)  # noqa: T201 - this is the CLI


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from ..wiring import build

    assistant = build(settings)
    questions = (line.rstrip("\n") for line in sys.stdin) if args.question == "-" else [args.question]
    for question in questions:
        reply = assistant.ask(question)
        if args.json:
            _print(json.dumps(reply.to_dict(), ensure_ascii=False))
        else:
            _print(f"[{reply.status}]\n{reply.answer}")
            for source in reply.sources:
                _print(f"  source: {source.article} > {source.section} (score {source.score:.2f})")
            _print()
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ..answering.triage import load_rules
    from ..articles.corpus import load_corpus
    from ..articles.indexing import Coordination, rollback
    from ..embeddings import Embedder
    from ..wiring import opened, reindex

    if args.check:
        from ..articles.corpus import check_phrasings

        articles = load_corpus(settings.corpus_dir)
        rules = load_rules(settings.corpus_dir)
        stale = [warning for a in articles for warning in check_phrasings(a, settings.corpus_dir / a.source)]
        if stale:
            _print("\n".join(stale), sys.stderr)
            return 1
        _print(
            f"Corpus OK: {len(articles)} article(s), {len(rules.flags)} red flags, "
            f"{len(rules.topics)} not-covered topics in {settings.corpus_dir}"
        )
        return 0
    if args.rollback:
        with opened(settings) as store:  # a database server: its lock and ledgers
            manifest = rollback(store, settings.index_dir, Coordination.from_settings(settings))
        _print(f"Rolled back: version {manifest.version} (built {manifest.built_at}) is active again.")
        return 0
    load_rules(settings.corpus_dir)  # a broken rules file stops ingest before anything is written
    embedder = Embedder(settings.embed_model)
    gate = None
    if args.gate:
        from ..evaluation.evalset import make_gate

        gate = make_gate(Path(args.gate), settings, embedder=embedder)
    report = reindex(
        settings,
        embedder=embedder,
        dry_run=args.dry_run,
        full=args.full,
        gate=gate,
        progress=not args.quiet,
        log=lambda line: _print(line, sys.stderr),
    )
    if report.published:
        from .audit import record

        record(settings.audit_log, getpass.getuser(), action="publish", version=report.version, gate=args.gate or "")
    _print(report.summary())
    return 1 if report.refused else 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from .web import serve

    serve(settings.model_copy(update={k: v for k, v in (("host", args.host), ("port", args.port)) if v}))
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from ..evaluation.evalset import run_eval_command

    return run_eval_command(Path(args.file), settings, report=args.report)


def cmd_eval_abstention(args: argparse.Namespace, settings: Settings) -> int:
    from ..evaluation.quality import run_quality

    return run_quality(settings, [], kqa=Path(args.file), out=Path(args.out) if args.out else None)


def cmd_quality(args: argparse.Namespace, settings: Settings) -> int:
    from ..evaluation.quality import run_quality

    sets = [Path(p) for p in args.set]
    kqa = Path(args.kqa) if args.kqa else (DEFAULT_KQA if DEFAULT_KQA.is_file() else None)
    if kqa is None:
        _print(f"(no K-QA questions at {DEFAULT_KQA}: that part is skipped)", sys.stderr)
    return run_quality(settings, sets, kqa=kqa, out=Path(args.out) if args.out else None)


def cmd_teach(args: argparse.Namespace, settings: Settings) -> int:
    from .audit import record
    from .teach import Teacher

    if bool(args.section) == bool(args.not_covered):
        _print("error: give either --section SECTION (attach a phrasing) or --not-covered", sys.stderr)
        return 2
    if args.article and not args.section or args.ask and not args.not_covered:
        _print("error: --article goes with --section, --ask with --not-covered", sys.stderr)
        return 2
    teacher = Teacher.from_settings(settings)
    if args.section:
        taught = teacher.attach(args.question, args.section, args.article)
    else:
        taught = teacher.not_covered(args.question, args.ask)
    record(settings.audit_log, args.by or getpass.getuser(), file=str(taught.path), **taught.detail)
    _print(taught.message)
    return 0


def cmd_staff_user(args: argparse.Namespace, settings: Settings) -> int:
    from .accounts import UserFile, read_new_password

    users = UserFile(settings.staff_users)
    if args.action == "list":
        for name in users.names():
            _print(name)
        return 0
    if not args.name:
        _print(f"error: staff-user {args.action} needs a NAME", sys.stderr)
        return 2
    if args.action == "remove":
        users.remove(args.name)
        _print(f"Removed {args.name!r} from {users.path}.")
        return 0
    password = read_new_password(sys.stdin.isatty(), getpass.getpass, sys.stdin.readline)
    users.add(args.name, password, replace=args.replace)
    _print(f"Saved {args.name!r} in {users.path} (scrypt hash; the password itself is not stored).")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="assistant", description="Answers about dry needling for back pain, from vetted articles."
    )
    sub = top.add_subparsers(dest="command", required=True)
    ask = sub.add_parser("ask", help="answer a question ('-' reads one question per line from stdin)")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="one JSON object per question")
    ask.set_defaults(run=cmd_ask)
    ing = sub.add_parser("ingest", help="build or update the index from the corpus")
    add_ingest_arguments(ing)
    serve = sub.add_parser("serve", help="start the web chat")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(run=cmd_serve)
    ev = sub.add_parser("eval", help="run a staff test set (YAML) and exit non-zero on any failure")
    ev.add_argument("file")
    ev.add_argument("--report", help="also write a Markdown (.md) or HTML (.html) report here")
    ev.set_defaults(run=cmd_eval)
    ab = sub.add_parser("eval-abstention", help="run real patient questions; report answered / not covered / urgent")
    ab.add_argument("file")
    ab.add_argument("--out", help="write the Markdown report here (e.g. docs/quality.md)")
    ab.set_defaults(run=cmd_eval_abstention)
    qu = sub.add_parser(
        "quality", help="score the dev and test patient sets and K-QA; exit 1 if the test split misses a target"
    )
    qu.add_argument(
        "--set",
        action="append",
        required=True,
        help="a patient set (YAML), repeatable; the project's are in tests/data (make quality runs them all)",
    )
    qu.add_argument("--kqa", help=f"real patient questions (JSON lines); default: {DEFAULT_KQA} when present")
    qu.add_argument("--out", help="also write the Markdown report here (e.g. docs/quality.md)")
    qu.set_defaults(run=cmd_quality)
    te = sub.add_parser("teach", help="attach a patient's question to a section's sentence, or mark it not covered")
    te.add_argument("question")
    te.add_argument("--section", help="the section that answers it (its heading, or the path 'Part > Heading')")
    te.add_argument("--article", help="the article's title or file, when several have that section")
    te.add_argument("--not-covered", action="store_true", help="the articles do not answer it")
    te.add_argument("--ask", help="who to ask instead (with --not-covered)")
    te.add_argument("--by", help="who is teaching, for the audit log (default: your login name)")
    te.set_defaults(run=cmd_teach)
    su = sub.add_parser(
        "staff-user", help="named staff accounts: add NAME (password from a prompt or stdin), remove NAME, list"
    )
    su.add_argument("action", choices=("add", "remove", "list"))
    su.add_argument("name", nargs="?")
    su.add_argument("--replace", action="store_true", help="set a new password for an existing name")
    su.set_defaults(run=cmd_staff_user)
    return top


def add_ingest_arguments(ing: argparse.ArgumentParser) -> None:
    ing.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    ing.add_argument("--check", action="store_true", help="validate the corpus and safety rules only")
    ing.add_argument("--rollback", action="store_true", help="make the previous version active again")
    ing.add_argument("--full", action="store_true", help="rebuild every chunk, even unchanged ones")
    ing.add_argument("--gate", metavar="FILE", help="publish only if this staff test set passes on the new version")
    ing.add_argument("--quiet", action="store_true", help="no progress bar")
    ing.set_defaults(run=cmd_ingest)


def main(argv: Sequence[str] | None = None, *, prog_ingest: bool = False) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if prog_ingest:
        ing = argparse.ArgumentParser(prog="ingest.py", description="Build or update the index from corpus/.")
        add_ingest_arguments(ing)
        args = ing.parse_args(argv)
    else:
        args = parser().parse_args(argv)
    try:
        settings = load_settings()
        return int(args.run(args, settings))
    except AssistantError as exc:
        _print(f"error: {exc}", sys.stderr)
        return 2
    except KeyboardInterrupt:
        _print("interrupted", sys.stderr)
        return 130
