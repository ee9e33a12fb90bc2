"""The scaled-out topology of docs/deploy.md, for real: two app processes (``python app.py``) on loopback
behind Debian's nginx, one ``chroma run`` server and one PostgreSQL, all started and stopped here."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, build_index, free_port
from gradio_client import Client
from sqlalchemy import func, select

from assistant.articles.indexing import Coordination
from assistant.config import load_settings
from assistant.database import feedback, open_database

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.browser]

ARTICLE = "dry-needling-for-back-pain.md"
QUESTION = "What are the side effects of dry needling?"
CHROMIUM = Path("/usr/bin/chromium")
NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
{user}
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
{site}
}}
"""


def nginx_site(replicas: list[int], port: int) -> str:
    """docs/nginx.conf, the site docs/deploy.md gives, with this test's ports."""
    site = (ROOT / "docs" / "nginx.conf").read_text()
    for documented, actual in (("127.0.0.1:7861", replicas[0]), ("127.0.0.1:7862", replicas[1])):
        assert site.count(documented) == 2
        site = site.replace(documented, f"127.0.0.1:{actual}")
    assert "listen 127.0.0.1:8080;" in site
    return site.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};")


def wait_for(url: str, proc: subprocess.Popen | None, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            raise AssertionError(f"{url} did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def topology(postgres, chroma_server, corpus_copy, tmp_path, embedder) -> Iterator[dict]:
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (make test installs Debian's nginx-light)")
    database = postgres()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")},
        "ASSISTANT_CORPUS_DIR": str(corpus_copy),
        "ASSISTANT_CHROMA_URL": chroma_server,
        "ASSISTANT_DATABASE_URL": database,
        "ASSISTANT_HOST": "127.0.0.1",
        "HF_HUB_OFFLINE": "1",
    }
    # The first version, published by a maintainer host through the shared lock and ledger.
    maintainer = load_settings(
        corpus_dir=corpus_copy, index_dir=tmp_path / "maintainer", chroma_url=chroma_server, database_url=database
    )
    build_index(
        corpus_copy, maintainer.index_dir, embedder, chroma_server, coordination=Coordination.from_settings(maintainer)
    )

    started: list[subprocess.Popen] = []
    try:
        ports = [free_port(), free_port()]
        replicas = []
        for n, port in enumerate(ports):
            log = tmp_path / f"replica-{n}.log"
            replica_env = {**env, "ASSISTANT_PORT": str(port), "ASSISTANT_INDEX_DIR": str(tmp_path / f"replica-{n}")}
            with open(log, "w") as out:
                proc = subprocess.Popen(
                    [sys.executable, "app.py"], cwd=ROOT, env=replica_env, stdout=out, stderr=subprocess.STDOUT
                )
            started.append(proc)
            replicas.append((proc, f"http://127.0.0.1:{port}", log))
        for proc, url, log in replicas:
            wait_for(f"{url}/api/v1/health", proc, log)

        nginx_port = free_port()
        conf = tmp_path / "nginx.conf"
        user = "user root root;" if os.geteuid() == 0 else ""  # workers must reach this test's folders
        conf.write_text(NGINX_CONF.format(tmp=tmp_path, user=user, site=nginx_site(ports, nginx_port)))
        nginx_log = tmp_path / "nginx-error.log"
        nginx = subprocess.Popen(
            ["nginx", "-p", str(tmp_path), "-c", str(conf), "-e", str(nginx_log), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        started.append(nginx)
        front = f"http://127.0.0.1:{nginx_port}"
        wait_for(f"{front}/api/v1/health", nginx, nginx_log, timeout=30)
        yield {
            "front": front,
            "replicas": replicas,
            "database": database,
            "env": env,
            "corpus": corpus_copy,
            "tmp": tmp_path,
        }
    finally:
        for proc in reversed(started):
            stop(proc)


def ask(url: str, question: str = QUESTION) -> dict:
    response = httpx.post(f"{url}/api/v1/ask", json={"question": question}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def rate_in_the_chat(browser, url: str) -> None:
    """A patient asks in the chat page served by one replica and rates the answer with a thumbs-up."""
    from playwright.sync_api import expect

    page = browser.new_page()
    try:
        page.goto(url)
        box = page.locator("#question textarea")
        box.fill(QUESTION)
        box.press("Enter")
        like = page.locator("#chat").get_by_role("button", name="Like", exact=True).last
        like.wait_for(timeout=60_000)
        like.click()
        expect(page.locator("#feedback-notice")).to_contain_text("your rating was saved", timeout=30_000)
    finally:
        page.close()


def test_two_replicas_behind_nginx_share_the_index_and_the_database(topology):
    front, replicas = topology["front"], topology["replicas"]

    # 1. A question through nginx is answered, over the JSON API and over the chat's own protocol.
    first = ask(front)
    assert first["status"] == "answered" and first["quotes"]
    chat = Client(front + "/", verbose=False).predict(QUESTION, api_name="/ask")
    assert chat["status"] == "answered" and chat["index_version"] == first["index_version"]

    # 2. Ratings given in the chat of each replica land in the one database.
    if not CHROMIUM.exists():
        pytest.fail(f"Debian's chromium is needed at {CHROMIUM} to rate in the chat (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless"])
        try:
            for _proc, url, _log in replicas:
                rate_in_the_chat(browser, url)
        finally:
            browser.close()
    engine = open_database(topology["database"])
    with engine.connect() as db:
        assert db.execute(select(func.count()).select_from(feedback)).scalar() == 2
    engine.dispose()

    # 3. An ingest from a third host publishes a new version; both replicas answer from it.
    article = topology["corpus"] / ARTICLE
    article.write_text(article.read_text().replace("resolve quickly.", "resolve soon."))
    ingest_env = {**topology["env"], "ASSISTANT_INDEX_DIR": str(topology["tmp"] / "third-host")}
    done = subprocess.run(
        [sys.executable, "ingest.py", "--quiet"], cwd=ROOT, env=ingest_env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    new_version = first["index_version"] + 1
    assert f"Published index version {new_version}" in done.stdout
    published = time.monotonic()
    waited = {}
    for _proc, url, _log in replicas:
        # Each replica rechecks the shared pointer once a second; 30 s only bounds a hang.
        while (reply := ask(url))["index_version"] != new_version:
            assert time.monotonic() - published < 30, f"{url} still answers from version {reply['index_version']}"
            time.sleep(0.1)
        waited[url] = round(time.monotonic() - published, 2)
    print(f"replicas answered from version {new_version} after (s): {waited}")

    # 4. One replica killed: nginx passes its requests to the other, and none fails.
    killed, _url, _log = replicas[0]
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    statuses = [httpx.post(f"{front}/api/v1/ask", json={"question": QUESTION}, timeout=60) for _ in range(20)]
    assert [r.status_code for r in statuses] == [200] * 20
    assert {r.json()["index_version"] for r in statuses} == {new_version}
    chat = Client(front + "/", verbose=False).predict(QUESTION, api_name="/ask")
    assert chat["status"] == "answered"
