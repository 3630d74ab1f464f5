"""The tracing hook: where an instrumentation opens spans *around* what the cache does.

Events report an outcome after the fact; a trace also needs the span to be *current while*
the work runs, so that the loader's database spans and the Redis client's spans nest under
the cache's. A :class:`Tracer` (``cache.tracer = ...``; :mod:`freshlink.contrib.otel` is one)
is asked for a context manager at four points: a call of a cached function that reaches the
read path ("get"), its loader ("load"), an invalidation ("invalidate") and a refresh
("refresh", in the background or by the ``.refresh()`` handle).

Off by default (``None``): the call sites test one attribute for ``None``, and inline L1 hits
(the hot path) never look at it at all; an instrumentation sees those through the ``hit``
event. Framework-free: nothing here imports a tracing library.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

__all__ = ["Tracer", "aloader", "loader", "traced_steps"]

R = TypeVar("R")
Op = TypeVar("Op")


class Tracer(Protocol):
    """Opens the spans of one cache's operations (see the module docstring)."""

    def span(self, op: str, function: str | None) -> AbstractContextManager[object]:
        """A span for ``op`` of ``function`` (None: not a function's), current inside."""

    def later(self, op: str, function: str | None) -> Callable[[], AbstractContextManager[object]]:
        """Remember the current context now; the factory opens the span under it later
        (a background refresh runs in another thread or task, after its caller returned)."""


def loader(tracer: Tracer, function: str, load: Callable[[], R]) -> Callable[[], R]:
    """``load`` run inside a "load" span."""

    def traced() -> R:
        with tracer.span("load", function):
            return load()

    return traced


def aloader(
    tracer: Tracer, function: str, load: Callable[[], Coroutine[Any, Any, R]]
) -> Callable[[], Coroutine[Any, Any, R]]:
    """Async :func:`loader`: the span lasts until the loader's coroutine is done."""

    async def traced() -> R:
        with tracer.span("load", function):
            return await load()

    return traced


def traced_steps(
    span: Callable[[], AbstractContextManager[object]],
    steps: Callable[[], Generator[Op, Any, R]],
) -> Callable[[], Generator[Op, Any, R]]:
    """Steps whose whole run is inside ``span()``: opened when the driver starts them.

    A driver runs a generator in one thread (or one task) from start to end, so the span is
    current while each yielded operation is performed, backend calls included.
    """

    def run() -> Generator[Op, Any, R]:
        with span():
            return (yield from steps())

    return run
