"""One app-wide answer budget: how many answers are computed at once, whichever route asked.

The chat's queued events run in Gradio's worker threads; the JSON API runs on the event loop.
Both take a slot from the same ``AnswerBudget`` before answering, so ``ASSISTANT_CONCURRENCY_LIMIT``
bounds them together. Slots are handed over first come, first served, to threads and coroutines alike.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

# The Gradio concurrency group every answering event joins (chat, /ask, the staff console).
ANSWERING = "answering"


class AnswerBudget:
    """A fair semaphore shared by threads (``slot``) and coroutines (``acquire_async``)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._lock = threading.Lock()
        self._active = 0
        # Each waiter is a threading.Event or an (event loop, future) pair; release hands its slot on.
        self._waiters: deque[threading.Event | tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _take_or_queue(self, waiter: threading.Event | tuple) -> bool:
        with self._lock:
            if self._active < self.limit and not self._waiters:
                self._active += 1
                return True
            self._waiters.append(waiter)
            return False

    def acquire(self) -> None:
        event = threading.Event()
        if not self._take_or_queue(event):
            event.wait()

    async def acquire_async(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (loop, future)
        if self._take_or_queue(waiter):
            return
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                if waiter in self._waiters:  # still queued: just leave the line
                    self._waiters.remove(waiter)
                    raise
            if not future.cancelled():  # the slot was handed over just as the caller gave up: pass it on
                self.release()
            raise  # (a cancelled future's slot is passed on by _hand_over)

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if isinstance(waiter, threading.Event):
                    waiter.set()  # the slot moves to that thread; active stays the same
                    return
                loop, future = waiter
                if not loop.is_closed():
                    loop.call_soon_threadsafe(_hand_over, future, self)
                    return
            self._active -= 1

    @contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


def _hand_over(future: asyncio.Future[None], budget: AnswerBudget) -> None:
    if future.done():  # cancelled in the meantime: the slot goes to the next in line
        budget.release()
    else:
        future.set_result(None)
