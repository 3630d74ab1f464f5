"""The read path, written once for sync and async code.

The algorithm (L1, then the generation-checked backend read, then a single-flight fill with a
cross-process lease, background refreshes, stale-if-error) lives in generators that *yield*
the I/O they need instead of doing it: a :class:`Call` to the backend, :data:`LOAD` to run the
loader, a :class:`SingleFlight` to run sub-steps under single-flight, a :class:`WaitFill` for
another process's fill, a :class:`Spawn` for a background refresh. :func:`run` performs those
with the sync backend methods and threads; :func:`arun` with the async ones and tasks (both
through :mod:`freshlink._drive`). Errors raised by the I/O are thrown back into the generator
at the ``yield`` that asked for it, so every ``try``/``except`` below reads like ordinary
straight-line code.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ._drive import adrive, drive
from ._entries import UNREADABLE
from ._outcomes import Stale
from ._ports import EngineView
from .backends.base import Read
from .errors import BackendError, FreshlinkError, RemoteLoaderError
from .events import Event, logger
from .policy import Action, Freshness

__all__ = [
    "LOAD",
    "MISS",
    "Call",
    "ReadPath",
    "SingleFlight",
    "Spawn",
    "WaitFill",
    "arun",
    "run",
]


@dataclass(frozen=True, slots=True)
class Call:
    """Call the backend method ``name`` (``a`` + name in async code) with ``args``."""

    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class SingleFlight:
    """Run ``steps()`` under single-flight keyed by ``key``; send back its result."""

    key: Hashable
    steps: Callable[[], Steps]


@dataclass(frozen=True, slots=True)
class WaitFill:
    """Wait for another process's fill of ``key``; send back (outcome, valid read or None)."""

    key: str
    timeout: float
    names: Sequence[str]


@dataclass(frozen=True, slots=True)
class Spawn:
    """Refresh in the background: at most one per ``key``, and once per served ``version``."""

    key: Hashable
    steps: Callable[[], Steps]
    version: float


class _Load:
    def __repr__(self) -> str:
        return "LOAD"


#: Run the loader; send back its value (or throw its exception in).
LOAD: Final = _Load()

Op = Call | SingleFlight | WaitFill | Spawn | _Load
Steps = Generator[Op, Any, Any]
#: What a read path step returns for "no usable value" (distinct from a cached None).
MISS: Final = object()


class ReadPath:
    """The read-path generators of one cache."""

    def __init__(self, engine: EngineView) -> None:
        self.c = engine

    def fetch(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        policy: Freshness,
        nk: Hashable,
        first: Read | BackendError | None = None,
    ) -> Steps:
        """L1, then the backend, then a single-flight fill.

        ``first`` is the outcome of a backend read already made (the cache's direct L2-hit
        attempt, when there is no L1): it is used instead of reading again.
        """
        c = self.c
        mark = c.entries.mark()
        stale: Stale | None = None
        e = c.near.get(nk, c.monotonic()) if c.near is not None and first is None else None
        try:
            if isinstance(first, BackendError):
                raise first
            if e is None and c.verify_near:
                e = c.near.peek(nk, c.monotonic())  # type: ignore[union-attr]
                # Strict L1: one small read confirms the entry's generations are current.
                if e is not None and tuple((yield Call("current", (e.names,)))) != e.values:
                    e = None
            if e is not None:
                action, left = c.entries.judge_near(e, policy)
                if action is not Action.LOAD:
                    yield from self._serve(
                        fname, key, "l1", action, policy, left, e.names, e.values, nk, e.created
                    )
                    return e.value
                stale = Stale(e.value, left)
            read: Read = (
                first if first is not None else (yield Call("read", (c.keyspace.entry(key), names)))
            )
        except BackendError as exc:
            # Redis down or slow: the page still renders, from the source of truth.
            c.outcomes.backend_failed(fname, key, exc, "read")
            c.outcomes.missed(fname, key)
            # Still one load per key in this process, so an outage of the cache does not
            # turn into a stampede on the database. (A caller can only land here if its own
            # read failed, i.e. no invalidation could be acknowledged when it started.)
            return (
                yield SingleFlight((key, None), lambda: self.degraded(fname, key, policy, stale))
            )
        if read.entry is not None:
            value = c.entries.value(fname, key, read.entry)
            if value is not UNREADABLE:
                entry = read.entry
                action, left = c.entries.judge(entry, policy)
                if action is not Action.LOAD:
                    c.entries.fill_near(nk, value, entry, policy, mark)
                    yield from self._serve(
                        fname,
                        key,
                        "l2",
                        action,
                        policy,
                        left,
                        entry.names,
                        entry.stamps,
                        nk,
                        entry.created,
                    )
                    return value
                stale = Stale(value, left)
        c.outcomes.missed(fname, key)
        gens = read.gens
        return (
            yield SingleFlight(
                (key, gens), lambda: self.fill(fname, key, names, gens, policy, nk, mark, stale)
            )
        )

    def degraded(self, fname: str, key: str, policy: Freshness, stale: Stale | None) -> Steps:
        """The loader alone, while the backend cannot be read."""
        c = self.c
        t0 = c.monotonic()
        try:
            value = yield LOAD
        except Exception as err:
            return c.outcomes.loader_failed(fname, key, err, policy, stale)
        c.outcomes.loaded(fname, key, c.monotonic() - t0)
        return value

    def _serve(
        self,
        fname: str,
        key: str,
        tier: str,
        action: Action,
        policy: Freshness,
        left: float | None,
        names: Sequence[str],
        stamps: Sequence[int],
        nk: Hashable,
        created: float,
    ) -> Steps:
        self.c.outcomes.served(fname, key, tier, action, policy, left)
        if action is not Action.SERVE and not self.c.outcomes.backing_off(key):
            mark = self.c.entries.mark()
            yield Spawn(
                key, lambda: self.refresh(fname, key, names, stamps, policy, nk, mark), created
            )

    def fill(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        stamps: tuple[int, ...],
        policy: Freshness,
        nk: Hashable,
        mark: int,
        stale: Stale | None,
    ) -> Steps:
        """Load, stamp with the generations read before loading, store if still current."""
        c = self.c
        if stale is not None and stale.usable(policy) and c.outcomes.backing_off(key):
            return stale.value  # the loader failed recently: wait for the retry time
        ekey, token = c.keyspace.entry(key), ""
        if c.backend.supports_leases:
            try:
                token, stamps, served = yield from self.lease(
                    fname, key, names, stamps, nk, policy, mark
                )
            except BackendError as exc:
                c.outcomes.backend_failed(fname, key, exc, "lease")
                token = ""
            except RemoteLoaderError as exc:
                # Retried once already: stale-if-error applies to waiters as to the leader.
                return c.outcomes.loader_failed(fname, key, exc, policy, stale)
            else:
                if served is not MISS:
                    return served
        t0 = c.monotonic()
        try:
            value = yield LOAD
        except Exception as exc:
            if token:
                yield from self.release(ekey, token, f"{type(exc).__name__}: {exc}")
            return c.outcomes.loader_failed(fname, key, exc, policy, stale)
        except BaseException:
            if token:
                yield from self.release(ekey, token, "")
            raise
        took = c.monotonic() - t0
        c.outcomes.loaded(fname, key, took)
        if not policy.storable(value):
            if token:
                yield from self.release(ekey, token, "")
            return value
        try:
            entry, copy, retain = c.entries.loaded(fname, key, names, stamps, value, policy, took)
        except FreshlinkError:
            # Unstorable (too large, not serialisable): give the lease back at once, or every
            # other caller would wait out the lease only to meet the same error.
            if token:
                yield from self.release(ekey, token, "")
            raise
        # A fill that lost a race with an invalidation is not stored (and not put in L1); the
        # caller still gets the value, which is allowed: its read began before the write.
        try:
            if (yield Call("write", (ekey, entry, retain, token))):
                c.entries.fill_near(nk, copy, entry, policy, mark)
        except BackendError as exc:
            c.outcomes.backend_failed(fname, key, exc, "write")
        # The caller gets the loader's own object, L1 keeps a decoded copy: mutating the
        # result of a call can never change what the next caller is served.
        return value

    def lease(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        stamps: tuple[int, ...],
        nk: Hashable,
        policy: Freshness,
        mark: int,
    ) -> Steps:
        """Cross-process single-flight: (token, stamps, MISS) or ("", stamps, served value).

        Waiters do not poll: they sleep until the fill channel says the leader wrote (or
        failed), or until the leader's lease runs out, when one of them takes over. A waiter
        whose leader's loader failed takes the lease and loads once itself (still one load at
        a time per key); only if the next leader fails too does it give up.
        """
        c = self.c
        ekey = c.keyspace.entry(key)
        handed_on = False
        while True:
            token, left = yield Call("lease", (ekey, c.lease_ttl))
            if token is not None:
                return token, stamps, MISS
            outcome, found = yield WaitFill(ekey, left, names)
            if found is not None:
                value = self._taken_over(fname, key, found, nk, policy, mark)
                if value is not MISS:
                    return "", stamps, value
            if outcome is not None and outcome[0] == "err":
                if c.events.remote_failure:
                    c.events.emit(
                        Event("remote_failure", fname, key, error=RemoteLoaderError(outcome[1]))
                    )
                if handed_on:
                    raise RemoteLoaderError(
                        f"{fname}: the processes loading {key} failed: {outcome[1]}"
                    )
                handed_on = True  # the leader gave its lease back: take it and try once
            read = yield Call("read", (ekey, names))
            value = self._taken_over(fname, key, read, nk, policy, mark)
            if value is not MISS:
                return "", stamps, value
            stamps = read.gens  # invalidated meanwhile: the next load stamps the newer gens

    def _taken_over(
        self, fname: str, key: str, read: Read, nk: Hashable, policy: Freshness, mark: int
    ) -> Any:
        """The value another process just stored, if ``read`` found it valid."""
        c = self.c
        if read.entry is None:
            return MISS
        value = c.entries.value(fname, key, read.entry)
        if value is UNREADABLE:
            return MISS
        c.entries.fill_near(nk, value, read.entry, policy, mark)
        c.outcomes.taken_over(fname, key)
        return value

    def release(self, ekey: str, token: str, why: str) -> Steps:
        """Give a lease back; a failure to do so only delays waiters until it expires."""
        try:
            yield Call("release", (ekey, token, why))
        except BackendError:
            logger.warning("freshlink: could not release the lease of %s", ekey)

    def refresh(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        stamps: Sequence[int],
        policy: Freshness,
        nk: Hashable,
        mark: int,
    ) -> Steps:
        """A background refresh, stamped with the stamps of the entry that was served.

        Returns whether the served entry's refresh is settled (stored, discarded, or left to
        another process); False after a failure, so it may be tried again after its backoff.
        """
        c = self.c
        ekey, token = c.keyspace.entry(key), ""
        t0 = c.monotonic()
        try:
            if c.backend.supports_leases:
                got, _left = yield Call("lease", (ekey, c.lease_ttl))
                if got is None:
                    return True  # another process is refreshing (or filling) it
                token = got
            t0 = c.monotonic()
            value = yield LOAD
        except Exception as exc:
            if token:
                yield from self.release(ekey, token, "")
            c.outcomes.refresh_failed(fname, key, exc, policy)
            return False
        took = c.monotonic() - t0
        c.outcomes.loaded(fname, key, took, emit=False)
        if not policy.storable(value):
            if token:
                yield from self.release(ekey, token, "")
            return True
        try:
            entry, copy, retain = c.entries.loaded(fname, key, names, stamps, value, policy, took)
        except FreshlinkError as exc:
            if token:
                yield from self.release(ekey, token, "")
            c.outcomes.refresh_failed(fname, key, exc, policy)
            return False
        try:
            # Stored only if the stamps are still current: a refresh that lost a race with
            # an invalidation is discarded, never stored.
            stored = yield Call("write", (ekey, entry, retain, token))
        except BackendError as exc:
            c.outcomes.refresh_failed(fname, key, exc, policy)
            return False
        if stored:
            c.entries.fill_near(nk, copy, entry, policy, mark)
            c.outcomes.refreshed(fname, key, took)
        return True


def run(engine: EngineView, steps: Steps, load: Callable[[], Any]) -> Any:
    """Drive read-path steps with the sync backend, threads and the thread single-flight."""

    def perform(op: Op) -> Any:
        if op is LOAD:
            return load()
        if isinstance(op, Call):
            return getattr(engine.backend, op.name)(*op.args)
        if isinstance(op, SingleFlight):
            return engine.flight.run(op.key, lambda: run(engine, op.steps(), load))[0]
        if isinstance(op, WaitFill):
            found: list[Read] = []

            def recheck() -> bool:
                found.append(engine.backend.read(op.key, op.names))
                return found[-1].entry is not None

            outcome = engine.backend.wait_fill(op.key, op.timeout, recheck)
            return outcome, _valid(found)
        if isinstance(op, Spawn):
            engine.refresher.submit(op.key, lambda: run(engine, op.steps(), load), op.version)
            return None
        raise TypeError(f"unknown read-path step {op!r}")

    return drive(steps, perform)


async def arun(
    engine: EngineView, steps: Steps, load: Callable[[], Coroutine[Any, Any, Any]]
) -> Any:
    """Drive read-path steps with the async backend, tasks and the asyncio single-flight."""

    async def perform(op: Op) -> Any:
        if op is LOAD:
            return await load()
        if isinstance(op, Call):
            return await getattr(engine.backend, "a" + op.name)(*op.args)
        if isinstance(op, SingleFlight):
            return (await engine.aflight.run(op.key, lambda: arun(engine, op.steps(), load)))[0]
        if isinstance(op, WaitFill):
            found: list[Read] = []

            async def recheck() -> bool:
                found.append(await engine.backend.aread(op.key, op.names))
                return found[-1].entry is not None

            outcome = await engine.backend.await_fill(op.key, op.timeout, recheck)
            return outcome, _valid(found)
        if isinstance(op, Spawn):
            engine.arefresher.submit(op.key, lambda: arun(engine, op.steps(), load), op.version)
            return None
        raise TypeError(f"unknown read-path step {op!r}")

    return await adrive(steps, perform)


def _valid(found: list[Read]) -> Read | None:
    """The last re-check's read if it found an entry (a fill another process stored)."""
    return found[-1] if found and found[-1].entry is not None else None
