"""Background refreshes: bounded, de-duplicated per key, observable through events.

Sync code gets a small thread pool; async code gets tasks on the running loop. Either way at
most one refresh per key runs in a process (across processes the fill lease does the same),
and when ``max_pending`` refreshes are already queued new ones are dropped: a refresh is an
optimisation, and a backlog of them must never grow without bound.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncRefresher", "Refresher"]


class Refresher:
    """Runs refresh jobs on a few daemon threads."""

    def __init__(self, workers: int = 2, max_pending: int = 1000) -> None:
        self.workers = workers
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._pending: set[Hashable] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._done = _Done()
        self.dropped = 0

    def submit(self, key: Hashable, job: Callable[[], Any], version: float = 0.0) -> bool:
        """Queue ``job`` unless ``key`` is being refreshed, ``version`` was, or the queue is full.

        ``version`` identifies the entry that was served (its creation time): a caller that
        read the old entry just before a refresh replaced it must not start a second one.
        """
        with self._lock:
            if key in self._pending or self._done.covers(key, version):
                return False
            if len(self._pending) >= self.max_pending:
                self.dropped += 1
                return False
            self._pending.add(key)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="freshlink")

        def run() -> None:
            done = False
            try:
                done = bool(job())
            finally:
                with self._lock:
                    self._pending.discard(key)
                    if done:  # a failed refresh may be tried again (after its backoff)
                        self._done.mark(key, version)

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


class _Done:
    """Which entry version of each key was last refreshed (bounded: forgetting is harmless)."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._versions: dict[Hashable, float] = {}

    def covers(self, key: Hashable, version: float) -> bool:
        done = self._versions.get(key)
        return done is not None and version <= done

    def mark(self, key: Hashable, version: float) -> None:
        if len(self._versions) >= self.LIMIT:
            self._versions.clear()
        if version > self._versions.get(key, float("-inf")):
            self._versions[key] = version


class AsyncRefresher:
    """Runs async refresh jobs as tasks on the running event loop."""

    def __init__(self, max_pending: int = 1000) -> None:
        self.max_pending = max_pending
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}
        self._done = _Done()
        self.dropped = 0

    def submit(
        self, key: Hashable, job: Callable[[], Coroutine[Any, Any, Any]], version: float = 0.0
    ) -> bool:
        """Start ``job()`` unless ``key`` is being refreshed, ``version`` was, or too many are."""
        if key in self._tasks or self._done.covers(key, version):
            return False
        if len(self._tasks) >= self.max_pending:
            self.dropped += 1
            return False
        import asyncio  # here: already loaded in async code, and `import freshlink` stays light

        task = asyncio.get_running_loop().create_task(job())
        self._tasks[key] = task

        def finished(task: asyncio.Task[Any]) -> None:
            self._tasks.pop(key, None)
            if not task.cancelled() and task.exception() is None and task.result():
                self._done.mark(key, version)

        task.add_done_callback(finished)
        return True

    def pending(self) -> int:
        """How many refresh tasks are running."""
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait for the running refresh tasks (tests and shutdown)."""
        import asyncio

        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)
