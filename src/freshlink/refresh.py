"""Background refreshes: bounded, de-duplicated per key, observable through events.

Sync code gets a small thread pool; async code gets tasks on the running loop. Either way at
most one refresh per key runs in a process (across processes the fill lease does the same),
and when ``max_pending`` refreshes are already queued new ones are dropped: a refresh is an
optimisation, and a backlog of them must never grow without bound.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["AsyncRefresher", "Refresher"]


class Refresher:
    """Runs refresh jobs on a few daemon threads."""

    def __init__(self, workers: int = 2, max_pending: int = 1000) -> None:
        self._workers = workers
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._pending: set[Hashable] = set()
        self._pool: ThreadPoolExecutor | None = None
        self.dropped = 0

    def submit(self, key: Hashable, job: Callable[[], Any]) -> bool:
        """Queue ``job`` unless a refresh of ``key`` is pending or the queue is full."""
        with self._lock:
            if key in self._pending:
                return False
            if len(self._pending) >= self.max_pending:
                self.dropped += 1
                return False
            self._pending.add(key)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="freshlink")

        def run() -> None:
            try:
                job()
            finally:
                with self._lock:
                    self._pending.discard(key)

        self._pool.submit(run)
        return True

    def pending(self) -> int:
        """How many refreshes are queued or running."""
        return len(self._pending)

    def close(self, wait: bool = False) -> None:
        """Stop accepting work; ``wait`` for running refreshes to finish."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)
            self._pool = None


class AsyncRefresher:
    """Runs async refresh jobs as tasks on the running event loop."""

    def __init__(self, max_pending: int = 1000) -> None:
        self.max_pending = max_pending
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}
        self.dropped = 0

    def submit(self, key: Hashable, job: Callable[[], Coroutine[Any, Any, Any]]) -> bool:
        """Start ``job()`` unless a refresh of ``key`` is running or too many are."""
        if key in self._tasks:
            return False
        if len(self._tasks) >= self.max_pending:
            self.dropped += 1
            return False
        task = asyncio.get_running_loop().create_task(job())
        self._tasks[key] = task
        task.add_done_callback(lambda t: self._tasks.pop(key, None))
        return True

    def pending(self) -> int:
        """How many refresh tasks are running."""
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait for the running refresh tasks (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)
