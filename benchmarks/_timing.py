"""Timing helpers: repeated measurements with their median and p95, a concurrent load, a child's peak RSS."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stats:
    """Latency samples in seconds; the properties are in milliseconds."""

    samples: tuple[float, ...]

    @property
    def p50(self) -> float:
        return float(np.percentile(self.samples, 50)) * 1000

    @property
    def p95(self) -> float:
        return float(np.percentile(self.samples, 95)) * 1000

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples)) * 1000


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call takes."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(
    cases: dict[str, Callable[[str], object]], questions: Sequence[str], repetitions: int
) -> dict[str, Stats]:
    """Time every case on the same questions, alternating cases so drift and noise hit them all alike.

    Each case first answers every question once, untimed: the figures are for a warm process.
    """
    for fn in cases.values():
        for question in questions:
            fn(question)
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repetitions):
        question = questions[rep % len(questions)]
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:  # rotate the order: no case always runs first
            started = time.perf_counter()
            cases[name](question)
            samples[name].append(time.perf_counter() - started)
    return {name: Stats(tuple(values)) for name, values in samples.items()}


@dataclass(frozen=True)
class Load:
    clients: int
    requests: int
    errors: int
    seconds: float
    latency: Stats

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds


def load_test(clients: list[Callable[[str], object]], questions: Sequence[str], requests: int) -> Load:
    """Send ``requests`` questions through ``clients`` (one thread each, one request at a time per client)."""
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    errors: list[BaseException] = []

    def worker(call: Callable[[str], object]) -> None:
        nonlocal issued
        while True:
            with lock:
                if issued >= requests:
                    return
                question = questions[issued % len(questions)]
                issued += 1
            started = time.perf_counter()
            try:
                call(question)
            except Exception as exc:  # counted and reported, never hidden
                with lock:
                    errors.append(exc)
                continue
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=worker, args=(call,)) for call in clients]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return Load(len(clients), requests, len(errors), seconds, Stats(tuple(latencies) or (float("nan"),)))


@dataclass(frozen=True)
class Child:
    seconds_to_first_line: float
    returncode: int
    first_line: str


def run_child(cmd: Sequence[str], env: dict[str, str], cwd: str) -> Child:
    """Wall time from process start to its first line of output.

    Not its peak RSS: ``wait4`` would report this (large) process's, which a child inherits at
    fork and keeps across exec on Linux, so a child reports its own (``VmHWM``) itself."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    seconds = time.perf_counter() - started
    proc.stdout.read()
    proc.stdout.close()
    proc.wait()
    return Child(seconds, proc.returncode, first.strip())
