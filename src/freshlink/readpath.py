"""The read path, written once for sync and async code.

In order, each step only when the previous one did not answer:

1. **L1** (:class:`~freshlink.local.NearCache`): a decoded value whose stamps equal the
   generations this process knows, within its TTL and while the channel is trusted.
2. **L2** (the backend): one generation-aware read returns the entry if its stamps are current,
   and otherwise the current generations, read *before* the loader starts.
3. **Load** under single-flight keyed by ``(key, generations)``, with a cross-process lease;
   the entry is stamped with the generations from step 2 and stored only if they are still
   current. Stamping with generations read before loading is what makes the cache-aside
   "stale set" race harmless: a loader that read old data stamps old generations, and the
   write's invalidation has already made those generations old.

Background refreshes and stale-if-error ride on the same steps. The algorithm lives in
generators that *yield* the I/O they need (:mod:`freshlink._ops`); errors raised by the I/O
are thrown back in at the ``yield`` that asked for it, so every ``try``/``except`` below reads
like ordinary straight-line code.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Hashable, Sequence
from typing import Any

from ._engine import Engine
from ._entries import UNREADABLE
from ._leases import MISS, Job, lease, release, unheld
from ._ops import LOAD, Call, ReadKey, SingleFlight, Spawn, Steps
from ._outcomes import Stale
from ._steps import arun, run, shared
from .backends.base import Read
from .errors import BackendError, FreshlinkError, RemoteLoaderError
from .events import Event
from .policy import Action, Freshness
from .tracing import loader, traced_steps

__all__ = ["MISS", "ReadPath", "fetch_own"]


class ReadPath:
    """The read-path generators of one cache."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def fetch(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        load: Callable[[], Any],
        policy: Freshness,
        near_key: Hashable | None = None,
    ) -> Any:
        """Return the cached value for ``key`` or load, stamp and store it (sync)."""
        if self.engine.near is not None:
            return run(self.engine, self.steps(fname, key, names, policy, near_key), load)
        # Strict without L1, the common L2 hit: one read and a fresh entry need none of the
        # read path's machinery. Anything else continues there with this read in hand.
        eng = self.engine
        ekey = eng.keyspace.entry(key)
        try:
            # One round trip answers a hit, and on a miss also takes the fill's lease.
            read: Read | BackendError = eng.gate.read(
                ekey, lambda: eng.read_key(ekey, names, policy.keep), shared
            )
        except BackendError as exc:
            read = exc
        value, first = self._fresh_hit(fname, key, read, policy)
        if value is not MISS:
            return value
        return run(self.engine, self.steps(fname, key, names, policy, near_key, first), load)

    async def afetch(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        load: Callable[[], Coroutine[Any, Any, Any]],
        policy: Freshness,
        near_key: Hashable | None = None,
    ) -> Any:
        """Async :meth:`fetch`: the same steps with the backend's async methods."""
        eng = self.engine
        if eng.near is None:  # the direct L2 attempt, as in fetch
            ekey = eng.keyspace.entry(key)
            try:
                read = await eng.agate.read(
                    ekey, lambda: eng.aread_key(ekey, names, policy.keep), shared
                )
            except BackendError as exc:
                return await arun(eng, self.steps(fname, key, names, policy, near_key, exc), load)
            value, first = self._fresh_hit(fname, key, read, policy)
            if value is MISS:
                steps = self.steps(fname, key, names, policy, near_key, first)
                return await arun(eng, steps, load)
            return value
        return await arun(eng, self.steps(fname, key, names, policy, near_key), load)

    def _fresh_hit(
        self, fname: str, key: str, read: Read | BackendError, policy: Freshness
    ) -> tuple[Any, Read | BackendError]:
        """The value of a valid, fresh entry in ``read`` (reported as an L2 hit), or MISS;
        and what the read path starts from (an unreadable entry, already reported, a miss)."""
        if isinstance(read, BackendError) or read.entry is None:
            return MISS, read
        entry = read.entry
        left = None
        if entry.ttl is not None:
            action, left = self.engine.entries.judge(entry, policy)
            if action is not Action.SERVE:
                return MISS, read
        value = self.engine.entries.value(fname, key, entry)
        if value is UNREADABLE:
            return MISS, Read(None, read.current)
        self.engine.outcomes.served(fname, key, "l2", Action.SERVE, policy, left)
        return value, read

    def steps(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        policy: Freshness,
        near_key: Hashable | None,
        first: Read | BackendError | None = None,
    ) -> Steps:
        """L1, then the backend, then a single-flight fill.

        ``first`` is the outcome of a backend read already made (the direct L2-hit attempt,
        when there is no L1): it is used instead of reading again.
        """
        eng = self.engine
        if eng.reopen:
            eng.reopen_channel()  # a forked child's first read starts its channel
        if near_key is None:
            near_key = key
        job = Job(fname, key, eng.keyspace.entry(key), tuple(names), policy, near_key)
        mark = eng.entries.mark()
        stale: Stale | None = None
        e = (
            eng.near.get(near_key, eng.monotonic())
            if eng.near is not None and first is None
            else None
        )
        try:
            if isinstance(first, BackendError):
                raise first
            if e is None and eng.verify_near:
                e = eng.near.peek(near_key, eng.monotonic())  # type: ignore[union-attr]
                # Strict L1: one small read confirms the entry's generations are current.
                if e is not None and tuple((yield Call("current", (e.names,)))) != e.stamps:
                    e = None
            if e is not None:
                action, left = eng.entries.judge_near(e, policy)
                if action is not Action.LOAD:
                    yield from self._serve(job, "l1", action, left, e.names, e.stamps, e.created)
                    return e.value
                stale = Stale(e.value, left)
            read: Read = (
                first if first is not None else (yield ReadKey(job.ekey, names, policy.keep))
            )
        except BackendError as exc:
            # Redis down or slow: the page still renders, from the source of truth.
            eng.outcomes.backend_failed(fname, key, exc, "read")
            eng.outcomes.missed(fname, key)
            # Still one load per key in this process, so an outage of the cache does not
            # turn into a stampede on the database. (A caller can only land here if its own
            # read failed, i.e. no invalidation could be acknowledged when it started.)
            return (yield SingleFlight((key, None), lambda: self.degraded(job, stale)))
        entry = read.entry
        if entry is not None:
            value = eng.entries.value(fname, key, entry)
            if value is not UNREADABLE:
                action, left = eng.entries.judge(entry, policy)
                if action is not Action.LOAD:
                    eng.entries.fill_near(near_key, value, entry, policy, mark)
                    yield from self._serve(
                        job, "l2", action, left, entry.names, entry.stamps, entry.created
                    )
                    return value
                stale = Stale(value, left)
        eng.outcomes.missed(fname, key)
        stamps, token, left = read.current, read.token, read.left
        if token is None:
            fill = lambda: self.fill(job, stamps, mark, stale, left)  # noqa: E731
            return (yield SingleFlight((key, stamps), fill))
        # This read took the fill's lease: it is held (Engine.read_key) for the flight's leader,
        # which may be another thread, whose own read found the lease taken. A caller that
        # joins a running flight gives its lease back at once if no leader took it up, or the
        # leader could be waiting for a fill that this caller would never make; so does a
        # leader that ended without using it.
        flight = SingleFlight(
            (key, stamps),
            lambda: self.fill(job, stamps, mark, stale, None),
            lambda: unheld(self.engine, job, token),
        )
        try:
            value = yield flight
        except Exception:
            yield from unheld(self.engine, job, token)
            raise
        yield from unheld(self.engine, job, token)
        return value

    def degraded(self, job: Job, stale: Stale | None) -> Steps:
        """The loader alone, while the backend cannot be read."""
        eng = self.engine
        t0 = eng.monotonic()
        try:
            value = yield LOAD
        except Exception as err:
            return eng.outcomes.loader_failed(job.fname, job.key, err, job.policy, stale)
        eng.outcomes.loaded(job.fname, job.key, eng.monotonic() - t0, settled=False)
        return value

    def _serve(
        self,
        job: Job,
        tier: str,
        action: Action,
        left: float | None,
        names: Sequence[str],
        stamps: Sequence[int],
        created: float,
    ) -> Steps:
        """Report a value about to be served; refresh it in the background if it is due."""
        eng = self.engine
        eng.outcomes.served(job.fname, job.key, tier, action, job.policy, left)
        if action is not Action.SERVE and not eng.outcomes.backing_off(job.key):
            mark = eng.entries.mark()
            stamped = (tuple(names), tuple(stamps))
            steps = lambda: self.refresh(job, *stamped, mark)  # noqa: E731
            if eng.tracer is not None:  # its span: a child of this read's, opened when it runs
                steps = traced_steps(eng.tracer.later("refresh", job.fname), steps)
            yield Spawn(job.key, steps, created)

    def fill(
        self,
        job: Job,
        stamps: tuple[int, ...],
        mark: int,
        stale: Stale | None,
        left: float | None,
    ) -> Steps:
        """Load, stamp with the generations read before loading, store if still current.

        ``left``: the seconds another caller's lease had left when the miss was read (None if
        the read did not try to take it).
        """
        eng = self.engine
        fname, key, policy = job.fname, job.key, job.policy
        token = eng.take_held(job.ekey) if eng.backend.supports_leases else ""
        if stale is not None and stale.usable(policy) and eng.outcomes.backing_off(key):
            if token:
                yield from release(job, token, "")
            return stale.value  # the loader failed recently: wait for the retry time
        if eng.backend.supports_leases and not token:
            try:
                token, stamps, served = yield from lease(self.engine, job, stamps, mark, left)
            except BackendError as exc:
                eng.outcomes.backend_failed(fname, key, exc, "lease")
                token = ""
            except RemoteLoaderError as exc:
                # Retried once already: stale-if-error applies to waiters as to the leader.
                return eng.outcomes.loader_failed(fname, key, exc, policy, stale)
            else:
                if served is not MISS:
                    return served
        t0 = eng.monotonic()
        try:
            value = yield LOAD
        except Exception as exc:
            if token:
                yield from release(job, token, f"{type(exc).__name__}: {exc}")
            return eng.outcomes.loader_failed(fname, key, exc, policy, stale)
        except BaseException:
            if token:
                yield from release(job, token, "")
            raise
        took = eng.monotonic() - t0
        eng.outcomes.loaded(fname, key, took)
        stamped = yield from self._stamped(job, job.names, stamps, value, took, token)
        if stamped is None:
            return value
        entry, copy, retain = stamped
        # A fill that lost a race with an invalidation is not stored (and not put in L1); the
        # caller still gets the value, which is allowed: its read began before the write.
        try:
            if (yield Call("write", (job.ekey, entry, retain, token))):
                eng.entries.fill_near(job.near_key, copy, entry, policy, mark)
        except BackendError as exc:
            eng.outcomes.backend_failed(fname, key, exc, "write")
        # The caller gets the loader's own object, L1 keeps a decoded copy: mutating the
        # result of a call can never change what the next caller is served.
        return value

    def _stamped(
        self,
        job: Job,
        names: Sequence[str],
        stamps: Sequence[int],
        value: Any,
        took: float,
        token: str,
    ) -> Steps:
        """(entry, decoded copy, retention) of a loaded value, or None if it is not stored.

        The lease is given back at once when nothing will be written: for a value the policy
        does not store, and for an unstorable one (too large, not serialisable; re-raised),
        or every other caller would wait out the lease only to meet the same outcome.
        """
        try:
            if job.policy.storable(value):
                return self.engine.entries.loaded(
                    job.fname, job.key, names, stamps, value, job.policy, took
                )
        except FreshlinkError:
            if token:
                yield from release(job, token, "")
            raise
        if token:
            yield from release(job, token, "")
        return None

    def refresh(
        self, job: Job, names: tuple[str, ...], stamps: tuple[int, ...], mark: int
    ) -> Steps:
        """A background refresh, stamped with the stamps of the entry that was served.

        Returns whether the served entry's refresh is settled (stored, discarded, or left to
        another process); False after a failure, so it may be tried again after its backoff.
        """
        eng = self.engine
        fname, key, policy = job.fname, job.key, job.policy
        token = ""
        try:
            if eng.backend.supports_leases:
                got, _left = yield Call("lease", (job.ekey, eng.lease_ttl))
                if got is None:
                    return True  # another process is refreshing (or filling) it
                token = got
            t0 = eng.monotonic()
            value = yield LOAD
        except Exception as exc:
            if token:
                yield from release(job, token, "")
            eng.outcomes.refresh_failed(fname, key, exc, policy)
            return False
        took = eng.monotonic() - t0
        eng.outcomes.loaded(fname, key, took, emit=False)
        try:
            stamped = yield from self._stamped(job, names, stamps, value, took, token)
        except FreshlinkError as exc:  # unstorable (its lease is already given back)
            eng.outcomes.refresh_failed(fname, key, exc, policy)
            return False
        if stamped is None:
            return True
        entry, copy, retain = stamped
        try:
            # Stored only if the stamps are still current: a refresh that lost a race with
            # an invalidation is discarded, never stored.
            stored = yield Call("write", (job.ekey, entry, retain, token))
        except BackendError as exc:
            eng.outcomes.refresh_failed(fname, key, exc, policy)
            return False
        if stored:
            eng.entries.fill_near(job.near_key, copy, entry, policy, mark)
            eng.outcomes.refreshed(fname, key, took)
        return True


def fetch_own(
    path: ReadPath,
    fname: str,
    key: str,
    names: Sequence[str],
    load: Callable[[], Any],
    policy: Freshness,
    withheld: object,
) -> Any:
    """:meth:`ReadPath.fetch` for a loader whose failure is its own caller's (views, fragments).

    Internal to :mod:`freshlink.contrib` (reached through ``Cache._fetch_own``). Traced like a
    cached function's call: a "get" span around it, a "load" span around ``load``. A ``load``
    that raises (a view's 403 for this user) is reported as an ``error`` event and re-raised
    to this caller alone: the single flight it led gets ``withheld`` instead, which the policy
    must refuse to store, so the callers that joined it run their own loader and no other
    process is told of the failure (its message may be about this user).
    """
    eng = path.engine
    tracer = eng.tracer
    traced = load if tracer is None else loader(tracer, fname, load)
    failed: list[Exception] = []

    def own() -> Any:
        try:
            return traced()
        except Exception as exc:
            failed.append(exc)
            return withheld

    def run_it() -> Any:
        got = path.fetch(fname, key, names, own, policy)
        if failed:
            if eng.events.error:
                eng.events.emit(Event("error", fname, key, error=failed[0]))
            raise failed[0]
        return got

    if tracer is None:
        return run_it()
    with tracer.span("get", fname):
        return run_it()
