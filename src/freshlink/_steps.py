"""The two drivers of the read path: its requests (:mod:`freshlink._ops`) performed.

:func:`run` performs them with the sync backend methods and threads; :func:`arun` with the
async ones and tasks (both through :mod:`freshlink._drive`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from ._drive import adrive, drive
from ._engine import Engine
from ._ops import LOAD, Call, Op, ReadKey, SingleFlight, Spawn, Steps, WaitFill
from .backends.base import Notice, Read

__all__ = ["arun", "run", "shared"]


def run(engine: Engine, steps: Steps, load: Callable[[], Any]) -> Any:
    """Drive read-path steps with the sync backend, threads and the thread single-flight."""

    def perform(op: Op) -> Any:
        if op is LOAD:
            return load()
        if isinstance(op, Call):
            return getattr(engine.backend, op.name)(*op.args)
        if isinstance(op, ReadKey):
            read = lambda: engine.read_key(op.key, op.names, op.keep)  # noqa: E731
            return engine.gate.read(op.key, read, shared)
        if isinstance(op, SingleFlight):
            follow = op.follow
            return engine.flight.run(
                op.key,
                lambda: run(engine, op.steps(), load),
                None if follow is None else lambda: run(engine, follow(), load),
            )[0]
        if isinstance(op, WaitFill):
            found: list[Read] = []

            def recheck() -> bool:
                found.append(engine.backend.read_lease(op.key, op.names, engine.lease_ttl))
                return _settles(found[-1])

            outcome = engine.backend.wait_fill(op.key, op.timeout, recheck)
            return outcome, _valid(_carried(outcome, found, op.stamps))
        if isinstance(op, Spawn):
            engine.refresher.submit(op.key, lambda: run(engine, op.steps(), load), op.version)
            return None
        raise TypeError(f"unknown read-path step {op!r}")

    return drive(steps, perform)


async def arun(engine: Engine, steps: Steps, load: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Drive read-path steps with the async backend, tasks and the asyncio single-flight."""

    async def perform(op: Op) -> Any:
        if op is LOAD:
            return await load()
        if isinstance(op, Call):
            return await getattr(engine.backend, "a" + op.name)(*op.args)
        if isinstance(op, ReadKey):
            return await engine.agate.read(
                op.key, lambda: engine.aread_key(op.key, op.names, op.keep), shared
            )
        if isinstance(op, SingleFlight):
            follow = op.follow
            flown = await engine.aflight.run(
                op.key,
                lambda: arun(engine, op.steps(), load),
                None if follow is None else lambda: arun(engine, follow(), load),
            )
            return flown[0]
        if isinstance(op, WaitFill):
            found: list[Read] = []

            async def recheck() -> bool:
                read = await engine.backend.aread_lease(op.key, op.names, engine.lease_ttl)
                found.append(read)
                return _settles(read)

            outcome = await engine.backend.await_fill(op.key, op.timeout, recheck)
            return outcome, _valid(_carried(outcome, found, op.stamps))
        if isinstance(op, Spawn):
            engine.arefresher.submit(op.key, lambda: arun(engine, op.steps(), load), op.version)
            return None
        raise TypeError(f"unknown read-path step {op!r}")

    return await adrive(steps, perform)


def shared(read: Read) -> Read:
    """A read as the callers that coalesced with its sender see it: the lease it took is
    held for the key's fill leader (see :meth:`Engine.read_key`), not theirs to give back."""
    return read if read.token is None else read._replace(token=None)


def _settles(read: Read) -> bool:
    """Whether a waiter's re-read ends its wait: the entry is there, or the lease was free and
    the re-read took it (the holder gave it back or died, and its notice was lost: a channel
    that was still connecting; the waiter would otherwise sleep out the lease)."""
    return read.entry is not None or read.token is not None


def _carried(notice: Notice | None, found: list[Read], stamps: tuple[int, ...]) -> list[Read]:
    """The waiter's re-checks, then the entry the fill notice carried (newest last).

    A notice may have been published before the waiter's own read (the channel delivers it
    late on a busy host) by a fill stamped before a write that was acknowledged before that
    read began: serving its entry would be a stale read. So it is taken only if stamped with
    the generations the waiter's read saw: then it was loaded after those were current, i.e.
    after every write acknowledged before the read. Otherwise the waiter reads again.
    """
    if notice is not None and notice.read is not None:
        entry = notice.read.entry
        if entry is not None and entry.stamps == stamps:
            found.append(notice.read)
    return found


def _valid(found: list[Read]) -> Read | None:
    """The last re-check's read if it ended the wait (an entry, or the lease taken)."""
    return found[-1] if found and _settles(found[-1]) else None
