"""Worker processes kept for a whole scenario (spawned once, as app servers would run).

``Pool(n)`` spawns ``n`` interpreters; ``pool.run(func, [args...])`` calls the module-level
function ``func`` in each (one argument tuple per worker, ``None`` to leave one idle) and
returns their results in worker order. Workers share one counter (``loads()`` in the worker,
``pool.loads`` here) so a scenario can count loader runs across processes.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import traceback
from collections.abc import Callable, Sequence
from typing import Any

_LOADS: Any = None


def loads() -> Any:
    """The shared loader-run counter (an ``mp.Value('i')``), inside a worker."""
    return _LOADS


def _serve(index: int, inbox: Any, outbox: Any, counter: Any) -> None:
    global _LOADS
    _LOADS = counter
    while (job := inbox.get()) is not None:
        module, name, args = job
        try:
            result = getattr(importlib.import_module(module), name)(*args)
        except BaseException:
            outbox.put((index, False, traceback.format_exc()))
        else:
            outbox.put((index, True, result))


class Pool:
    """``n`` spawned worker processes running module-level functions on request."""

    def __init__(self, n: int) -> None:
        ctx = mp.get_context("spawn")
        self.loads = ctx.Value("i", 0)
        self._out = ctx.Queue()
        self._in = [ctx.Queue() for _ in range(n)]
        self._procs = [
            ctx.Process(target=_serve, args=(i, q, self._out, self.loads), daemon=True)
            for i, q in enumerate(self._in)
        ]
        for p in self._procs:
            p.start()

    def run(
        self, func: Callable[..., Any], args: Sequence[tuple[Any, ...] | None], timeout: float = 120
    ) -> list[Any]:
        """Run ``func(*args[i])`` in worker ``i`` (skipping ``None``); results in order."""
        busy = 0
        for q, a in zip(self._in, args, strict=False):
            if a is not None:
                q.put((func.__module__, func.__name__, a))
                busy += 1
        results: dict[int, Any] = {}
        errors = []
        for _ in range(busy):
            i, ok, value = self._out.get(timeout=timeout)
            if ok:
                results[i] = value
            else:
                errors.append(value)
        if errors:
            raise RuntimeError("a benchmark worker failed:\n" + errors[0])
        return [results[i] for i in sorted(results)]

    def close(self) -> None:
        """Stop the workers."""
        for q in self._in:
            q.put(None)
        for p in self._procs:
            p.join(10)
            if p.is_alive():
                p.kill()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
