"""The one sans-I/O driver: run a generator that yields the I/O it needs.

The read path and every Redis operation are written once as generators that *yield* an
operation and receive its result; :func:`drive` performs each with blocking calls and
:func:`adrive` with awaited ones, so sync and async code share every line of logic. An error
raised while performing an operation is thrown back into the generator at the ``yield`` that
asked for it, so a ``try``/``except`` around a ``yield`` reads like straight-line code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["adrive", "drive"]

Op = TypeVar("Op")
R = TypeVar("R")


def drive(steps: Generator[Op, Any, R], perform: Callable[[Op], Any]) -> R:
    """Run ``steps`` to completion, performing each yielded operation with ``perform``."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as stop:
            result: R = stop.value
            return result
        value, error = None, None
        try:
            value = perform(op)
        except BaseException as exc:  # thrown back in: the generator decides
            error = exc


async def adrive(steps: Generator[Op, Any, R], perform: Callable[[Op], Awaitable[Any]]) -> R:
    """Async :func:`drive`: each operation is awaited."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as stop:
            result: R = stop.value
            return result
        value, error = None, None
        try:
            value = await perform(op)
        except BaseException as exc:
            error = exc
