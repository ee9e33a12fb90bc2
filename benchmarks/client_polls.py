"""Why the Gradio API through ``gradio_client`` is slower than the server: ``.venv/bin/python benchmarks/client_polls.py``.

Starts the app on a copy of corpus/, then times ``/ask`` through ``gradio_client`` and over plain HTTP,
alternating, and counts the time ``gradio_client``'s event-stream reader (``stream_sse_v1plus``) spends in
its 50 ms sleeps during each call. Prints one line; writes nothing.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import run  # the benchmark's helpers (it puts the project on sys.path)

from assistant.edges.ui import build_app
from assistant.embeddings import Embedder


def main() -> int:
    import gradio_client.utils as client_utils

    embedder = Embedder()
    with tempfile.TemporaryDirectory(prefix="assistant-polls-") as folder:
        settings, _ = run.prepare(Path(folder) / "article")
        run.reindex(settings, embedder)
        app = build_app(run.make_assistant(settings, embedder), settings, None)
        port = run.free_port()
        app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            url = f"http://127.0.0.1:{port}/"
            through_client, over_http = run.gradio_client(url), run.gradio_http(url)
            for question in run.TEXTS:  # warm
                through_client(question)
                over_http(question)
            slept: list[float] = []
            real_sleep = time.sleep

            def counted_sleep(seconds: float) -> None:
                if sys._getframe(1).f_code.co_name == "stream_sse_v1plus":
                    slept.append(seconds)
                real_sleep(seconds)

            # gradio_client.utils calls time.sleep through its own module reference: give it a counting one.
            functions = {name: getattr(time, name) for name in dir(time) if not name.startswith("_")}
            client_utils.time = types.SimpleNamespace(**{**functions, "sleep": counted_sleep})
            client_ms, http_ms, sleep_ms = [], [], []
            for question in run.TEXTS * 3:
                before = len(slept)
                client_ms.append(run.timed(lambda q=question: through_client(q)) * 1000)
                sleep_ms.append(sum(slept[before:]) * 1000)
                http_ms.append(run.timed(lambda q=question: over_http(q)) * 1000)
        finally:
            app.close()
    print(
        f"{len(client_ms)} calls: gradio_client p50 {statistics.median(client_ms):.1f} ms, plain HTTP p50 "
        f"{statistics.median(http_ms):.1f} ms; gradio_client's reader slept {statistics.median(sleep_ms):.0f} ms "
        f"per call (median; min {min(sleep_ms):.0f}, max {max(sleep_ms):.0f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
