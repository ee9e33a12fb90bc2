"""Staff and scripts use the terminal: the JSON contract, stdin batches, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import CORPUS, ROOT

FIELDS = {"question", "status", "answer", "sources", "index_version", "quotes", "suggestions"}


def run(args, index_dir, corpus_dir=CORPUS, stdin=None):
    env = {**os.environ, "ASSISTANT_INDEX_DIR": str(index_dir), "ASSISTANT_CORPUS_DIR": str(corpus_dir)}
    return subprocess.run(
        [sys.executable, *args], input=stdin, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


def test_ask_json_prints_the_contract(index_dir):
    done = run(["-m", "assistant", "ask", "--json", "What is dry needling?"], index_dir)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert set(reply) == FIELDS and reply["status"] == "answered"
    assert set(reply["sources"][0]) == {"article", "section", "chunk_id", "score", "text"}
    assert reply["answer"].rstrip().endswith("back pain.*")


def test_ask_reads_one_question_per_line_from_stdin(index_dir):
    done = run(
        ["-m", "assistant", "ask", "--json", "-"], index_dir, stdin="What is dry needling?\n\nHow much does it cost?\n"
    )
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["status"] for r in replies] == ["answered", "rejected", "not_covered"]


def test_ask_without_json_prints_readable_text(index_dir):
    done = run(["-m", "assistant", "ask", "Is dry needling safe?"], index_dir)
    assert done.stdout.startswith("[answered]") and "source: " in done.stdout


def test_missing_index_says_how_to_build_it(tmp_path):
    done = run(["app.py", "--port", "1"], tmp_path / "no-index")
    assert done.returncode == 2
    assert "no index yet: run python ingest.py" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("flag", ["--check", "--dry-run"])
def test_ingest_check_and_dry_run_write_nothing(tmp_path, flag):
    done = run(["ingest.py", flag, "--quiet"], tmp_path / "index")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "index" / "ACTIVE.json").exists()


def test_ingest_error_names_the_file_and_line(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "safety").mkdir(parents=True)
    for name in ("red-flags.yaml", "not-covered.yaml"):
        (corpus / "safety" / name).write_text((CORPUS / "safety" / name).read_text())
    (corpus / "bad.md").write_bytes(b"# Title\n\n## Part\n\n\xff\xfe\n")
    done = run(["ingest.py", "--check"], tmp_path / "index", corpus)
    assert done.returncode == 2
    assert "bad.md line 5: not UTF-8" in done.stderr and "Traceback" not in done.stderr


def test_broken_red_flag_rules_stop_ingest(tmp_path, corpus_copy):
    (corpus_copy / "safety" / "red-flags.yaml").write_text("flags:\n  - id: x\n    tier: soon\n")
    done = run(["ingest.py", "--quiet"], tmp_path / "index", corpus_copy)
    assert done.returncode == 2 and "red-flags.yaml" in done.stderr
    assert not (tmp_path / "index" / "ACTIVE.json").exists()
