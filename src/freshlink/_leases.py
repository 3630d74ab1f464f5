"""The read path's cross-process single-flight: fill leases taken, waited for, given back.

A miss's read takes the fill's lease in the same round trip (``read_lease``); the lease is then
held for whichever caller leads the key's fill in this process (:meth:`Engine.hold`). A caller
whose read found the lease taken waits for the holder's fill notice instead of polling.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Final

from ._engine import Engine
from ._entries import UNREADABLE
from ._ops import Call, Steps, WaitFill
from .backends.base import Read
from .errors import BackendError, RemoteLoaderError
from .events import Event, logger
from .policy import Freshness

__all__ = ["MISS", "Job", "lease", "read_call", "release", "unheld"]

#: What a read path step returns for "no usable value" (distinct from a cached None).
MISS: Final = object()


@dataclass(frozen=True, slots=True)
class Job:
    """One read's constants, carried through its steps."""

    fname: str
    key: str
    ekey: str
    names: tuple[str, ...]
    policy: Freshness
    #: Where L1 keeps the value: the key, or the call's raw key when the decorator memoizes.
    near_key: Hashable


def read_call(eng: Engine, job: Job) -> Call:
    """The read of a key: one that also takes the fill's lease on a miss, if leases exist."""
    if eng.backend.supports_leases:
        return Call("read_lease", (job.ekey, job.names, eng.lease_ttl, job.policy.keep))
    return Call("read", (job.ekey, job.names))


def unheld(eng: Engine, job: Job, token: str) -> Steps:
    """Give back the lease ``token`` a read took, if no fill has taken it up."""
    if eng.take_held(job.ekey, token):
        yield from release(job, token, "")


def release(job: Job, token: str, why: str) -> Steps:
    """Give a lease back; a failure to do so only delays waiters until it expires."""
    try:
        yield Call("release", (job.ekey, token, why))
    except BackendError:
        logger.warning("freshlink: could not release the lease of %s", job.ekey)


def lease(
    eng: Engine, job: Job, stamps: tuple[int, ...], mark: int, left: float | None = None
) -> Steps:
    """Cross-process single-flight: (token, stamps, MISS) or ("", stamps, served value).

    Waiters do not poll: they sleep until the fill channel says the leader wrote (or failed),
    or until the leader's lease runs out, when one of them takes over. A waiter whose leader's
    loader failed takes the lease and loads once itself (still one load at a time per key);
    only if the next leader fails too does it give up. ``left`` is what the read that saw the
    miss already learned of the holder's lease (None: ask).
    """
    handed_on = False
    while True:
        if left is None:
            token, left = yield Call("lease", (job.ekey, eng.lease_ttl))
            if token is not None:
                return token, stamps, MISS
        outcome, found = yield WaitFill(job.ekey, left, job.names, stamps)
        left = None
        if found is not None and found.token is not None:
            return found.token, found.current, MISS  # a re-read found the lease free: ours
        if found is not None:
            value = taken_over(eng, job, found, mark)
            if value is not MISS:
                return "", stamps, value
        if outcome is not None and outcome[0] == "err":
            if eng.events.remote_failure:
                error = RemoteLoaderError(outcome[1])
                eng.events.emit(Event("remote_failure", job.fname, job.key, error=error))
            if handed_on:
                raise RemoteLoaderError(
                    f"{job.fname}: the processes loading {job.key} failed: {outcome[1]}"
                )
            handed_on = True  # the leader gave its lease back: take it and try once
        read = yield read_call(eng, job)  # which takes the lease if it is free again
        value = taken_over(eng, job, read, mark)
        if value is not MISS:
            return "", stamps, value
        stamps = read.current  # invalidated meanwhile: the next load stamps the newer ones
        if read.token is not None:
            return read.token, stamps, MISS
        left = read.left


def taken_over(eng: Engine, job: Job, read: Read, mark: int) -> Any:
    """The value another process just stored, if ``read`` found it valid."""
    if read.entry is None:
        return MISS
    value = eng.entries.value(job.fname, job.key, read.entry)
    if value is UNREADABLE:
        return MISS
    eng.entries.fill_near(job.near_key, value, read.entry, job.policy, mark)
    eng.outcomes.taken_over(job.fname, job.key)
    return value
