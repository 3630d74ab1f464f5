"""The one sans-I/O driver: run a generator that yields the I/O it needs.

The read path and every Redis operation are written once as generators that *yield* an
operation and receive its result; :func:`drive` performs each with blocking calls and
:func:`adrive` with awaited ones, so sync and async code share every line of logic. An error
raised while performing an operation is thrown back into the generator at the ``yield`` that
asked for it, so a ``try``/``except`` around a ``yield`` reads like straight-line code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar

__all__ = ["adrive", "drive"]

Op = TypeVar("Op")
R = TypeVar("R")


class _Stepper(Generic[Op, R]):
    """Resumes a generator with the outcome of its last operation, until it returns."""

    __slots__ = ("error", "op", "result", "steps", "value")

    def __init__(self, steps: Generator[Op, Any, R]) -> None:
        self.steps = steps
        self.value: Any = None
        self.error: BaseException | None = None
        self.op: Op
        self.result: R

    def done(self) -> bool:
        """Resume the generator; True once it returned (its result is in ``result``)."""
        value, error = self.value, self.error
        self.value = self.error = None
        try:
            self.op = self.steps.send(value) if error is None else self.steps.throw(error)
        except StopIteration as stop:
            self.result = stop.value
            return True
        return False


def drive(steps: Generator[Op, Any, R], perform: Callable[[Op], Any]) -> R:
    """Run ``steps`` to completion, performing each yielded operation with ``perform``."""
    run = _Stepper(steps)
    while not run.done():
        try:
            run.value = perform(run.op)
        except BaseException as exc:  # thrown back in: the generator decides
            run.error = exc
    return run.result


async def adrive(steps: Generator[Op, Any, R], perform: Callable[[Op], Awaitable[Any]]) -> R:
    """Async :func:`drive`: each operation is awaited."""
    run = _Stepper(steps)
    while not run.done():
        try:
            run.value = await perform(run.op)
        except BaseException as exc:
            run.error = exc
    return run.result
