"""The L1 near cache (cachetools) and its coherence bookkeeping.

An L1 entry remembers the generations it was stamped with. The near cache remembers the
latest generation it *knows* for each name, learned from backend reads and from invalidation
messages. An entry is served from L1 only while every stamp equals the known generation, the
entry's own TTL has not run out, and the invalidation channel is trusted.

Validation is lazy: an invalidation does not search for dependent entries, it bumps ``epoch``.
An entry validated under the current epoch is served with two comparisons; after any
invalidation the next hit re-checks its stamps once and records the new epoch.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cachetools import FIFOCache

from .errors import ConfigurationError

__all__ = ["POLL_EVERY", "Local", "NearCache", "NearEntry"]

Mode = Literal["bounded", "strict"]

# How many recent messages learn_own can look back through (see NearCache._heard_since).
_RECENT = 1024

#: How often (s) hits let the channel be drained in the caller's own thread. A thread that
#: never blocks holds the GIL for a whole switch interval (5 ms) against the listener thread,
#: so under it a message would wait 5 ms per handoff; instead every POLL_EVERY the hot path's
#: trust deadline runs out and that hit reads what has arrived, in the caller's own thread
#: (repoll). A quarter of a millisecond: on an idle 2-core machine, 7 interleaved runs of the
#: busy reader (300 writes each) saw new values after p50 0.48 / p99 0.90 ms (medians of the
#: runs) against 0.59 / 1.07 ms at half a millisecond, for about 3% of a thread that does
#: nothing but hits (1 % or less of an L1 hit's cost in benchmarks.compare). An eighth of a
#: millisecond cost twice as much, for a p50 no better, on a loaded machine.
POLL_EVERY = 0.00025
# How soon to poll again when another thread held the channel (it is about to be done).
_POLL_BUSY = 0.00005


@dataclass(frozen=True, slots=True)
class Local:
    """Configuration of the per-process L1 near cache."""

    maxsize: int = 10_000
    ttl: float | None = None
    mode: Mode = "bounded"
    max_staleness: float = 0.1
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_bytes is not None and (
            not isinstance(self.max_bytes, int) or self.max_bytes < 1
        ):
            raise ConfigurationError(
                f"Local(max_bytes=) must be a positive int or None, got {self.max_bytes!r}"
            )
        if not isinstance(self.maxsize, int) or self.maxsize < 1:
            raise ConfigurationError(
                f"Local(maxsize=) must be a positive int, got {self.maxsize!r}"
            )
        if self.ttl is not None and not self.ttl > 0:
            raise ConfigurationError(f"Local(ttl=) must be > 0 seconds or None, got {self.ttl!r}")
        if self.mode not in ("bounded", "strict"):
            raise ConfigurationError(
                f"Local(mode=) must be 'bounded' or 'strict', got {self.mode!r}"
            )
        if not self.max_staleness > 0:
            raise ConfigurationError(
                f"Local(max_staleness=) must be > 0 seconds, got {self.max_staleness!r}"
            )


class NearEntry:
    """One L1 entry: a decoded value, its stamps, and the epoch it was last validated in.

    Times are monotonic: ``fresh`` is when the inlined hot path stops serving it without
    asking the freshness policy, ``expires`` when it may no longer be served at all, ``born``
    when it was stored (for the policy's age), ``ttl`` and ``load_time`` as stored.
    """

    __slots__ = (
        "born",
        "created",
        "epoch",
        "expires",
        "fresh",
        "load_time",
        "names",
        "size",
        "stamps",
        "ttl",
        "value",
    )

    def __init__(
        self,
        value: Any,
        names: tuple[str, ...],
        stamps: tuple[int, ...],
        expires: float,
        fresh: float | None = None,
        born: float = 0.0,
        ttl: float | None = None,
        load_time: float = 0.0,
        created: float = 0.0,
        size: int = 0,
    ) -> None:
        self.value = value
        # Names and stamps as two tuples: the names tuple is the one the function's key memo
        # and the backend entry already hold, so an L1 entry does not copy it.
        self.names = names
        self.stamps = stamps
        self.expires = expires
        self.fresh = expires if fresh is None else min(fresh, expires)
        self.born = born
        self.ttl = ttl
        self.load_time = load_time
        self.created = created  # wall-clock creation time of the backend entry
        self.size = size  # serialized size plus a fixed overhead: what max_bytes counts
        # -1 never equals an epoch, so a new entry is validated against ``known`` on first use.
        self.epoch = -1


def _entry_size(entry: NearEntry) -> int:
    return entry.size


class NearCache:
    """The L1 store plus the generations this process knows to be current.

    What this process knows of a generation comes from three sources, trusted differently,
    because under ``maxmemory`` eviction (or a restart) a generation can be re-created from a
    random value, so a larger value is not always a newer one:

    * an invalidation message (:meth:`heard`): the channel delivers them in publication order,
      so a message is never older than what came before it on the channel;
    * a backend reply (:meth:`learn_since`): learned only if no message about that name was
      heard since the read was sent (else the reply may predate the message and is dropped);
    * this process's own invalidation (:meth:`learn_own`): its result holds until its own
      message comes back, so a message published *before* it cannot make this process read
      a value older than its own write.

    Any value that is lower than the known one (a re-created generation, a late copy) makes the
    name unknown: entries stamped with it go to the backend until the next message.
    """

    def __init__(self, config: Local, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        # FIFOCache because its ``__getitem__`` only reads: hits need no lock. An LRU moves the
        # key on every read, which is a write that would need a lock on the hot path.
        # With max_bytes the cache's own size is in bytes (cachetools' getsizeof) and the entry
        # count is bounded in put(); without it, by entries alone.
        self.data: FIFOCache[Hashable, NearEntry] = (
            FIFOCache(config.max_bytes, getsizeof=_entry_size)
            if config.max_bytes is not None
            else FIFOCache(config.maxsize)
        )
        self.known: dict[str, int] = {}
        # Per name, a generation seen on the channel and then contradicted: nothing below it is
        # learned from a message again until a backend reply confirms the name (see _apply).
        self.floor: dict[str, int] = {}
        # Sequence number of the last message heard about each name (see learn_since).
        self.heard_at: dict[str, int] = {}
        # This process's own invalidations whose message has not come back yet, per name.
        self.pending: dict[str, list[int]] = {}
        # The last messages heard, (seq, name, value): lets learn_own tell whether its own
        # message already came back while its reply was on the way.
        self._recent: deque[tuple[int, str, int]] = deque(maxlen=_RECENT)
        self._known_max = config.maxsize * 8
        self._lock = threading.RLock()
        self.epoch = 0
        # ``seq`` counts messages and wipes; :meth:`mark` reads it before a backend request,
        # and a reply is learned only if nothing about its names was heard after its mark.
        self.seq = 0
        self._wiped_at = 0
        # Bumped whenever ``known`` is wiped (tests and tools watch it).
        self.resets = 0
        # Monotonic time until which the hot path serves from L1. A synchronous backend
        # trusts it for ever; a channel-backed one moves it forward on each proof of
        # liveness. With a poll hook it also stops at the next poll (see POLL_EVERY).
        self.trusted_until = math.inf
        # With a poll hook: the time the channel proved L1 trusted until (trusted_until is
        # the earlier of it and the next poll). Without one it is not used.
        self.proved_until = math.inf
        self.poll: Callable[[], bool] | None = None
        self._poll_at = -math.inf

    def after_fork(self) -> None:
        """In a forked child: a lock held by a parent's thread at the fork is never released."""
        self._lock = threading.RLock()

    def poll_with(self, poll: Callable[[], bool]) -> None:
        """Have hits call ``poll`` (drains the channel, never raises) every :data:`POLL_EVERY`."""
        with self._lock:
            self.proved_until = self.trusted_until
            self.poll = poll

    def get(self, key: Hashable, now: float) -> NearEntry | None:
        """The entry under ``key`` if it is valid now, else None (the slow-path check)."""
        try:
            e = self.data[key]
        except KeyError:
            return None
        if now >= e.expires:
            return None
        if now >= self.trusted_until and not self._polled(now):
            return None
        epoch = self.epoch  # read before checking, so a concurrent bump forces a re-check
        if e.epoch != epoch:
            known = self.known
            for name, value in zip(e.names, e.stamps):  # noqa: B905 - equal by construction
                if known.get(name) != value:
                    return None
            e.epoch = epoch
        return e

    def peek(self, key: Hashable, now: float) -> NearEntry | None:
        """The entry under ``key`` if within its TTL, unvalidated (strict mode verifies it)."""
        try:
            e = self.data[key]
        except KeyError:
            return None
        return e if now < e.expires else None

    def repoll(self, now: float, e: NearEntry) -> bool:
        """The hot path at ``trusted_until``: poll if that is all it takes; may ``e`` be served?"""
        return self._polled(now) and e.epoch == self.epoch  # (a message read may bump it)

    def _polled(self, now: float) -> bool:
        """A poll is due at ``now``: drain the channel here; False if L1 is not trusted now."""
        poll = self.poll
        if poll is None or now >= self.proved_until:
            return False
        done = poll()  # outside our lock: its messages take it (heard), after the channel's own
        with self._lock:
            # Under the lock, as trust and distrust: a channel lost meanwhile (proved_until
            # set to -inf) must not be trusted again by this re-arm.
            if now >= self.proved_until:
                return False
            self._poll_at = now + (POLL_EVERY if done else _POLL_BUSY)
            self.trusted_until = min(self.proved_until, self._poll_at)
        return True

    def trusted(self, now: float) -> bool:
        """Whether the channel has proved L1 trustworthy at ``now`` (polls due or not)."""
        return now < (self.trusted_until if self.poll is None else self.proved_until)

    def trust(self, until: float) -> None:
        """The channel proved delivery: L1 may be trusted until ``until`` (monotonic)."""
        if self.poll is None:
            if until > self.trusted_until:
                self.trusted_until = until
            return
        with self._lock:
            if until > self.proved_until:
                self.proved_until = until
            self.trusted_until = min(self.proved_until, self._poll_at)

    def distrust(self) -> None:
        """The channel is lost or restarting: flush L1 and stop trusting it until proven."""
        with self._lock:
            self.trusted_until = self.proved_until = -math.inf
            self.clear()

    def put(self, key: Hashable, entry: NearEntry) -> None:
        """Store an entry (its stamps are learned as known generations by the caller)."""
        with self._lock:
            data = self.data
            if self.config.max_bytes is not None:
                if entry.size > data.maxsize:
                    return  # larger than the whole budget: never held in L1
                while len(data) >= self.config.maxsize and key not in data:
                    data.popitem()
            data[key] = entry

    def mark(self) -> int:
        """Take before sending a backend request whose reply will be learned."""
        return self.seq

    def heard(self, names: Sequence[str], values: Sequence[int]) -> None:
        """Record an invalidation message (the channel's listener calls this, in order)."""
        with self._lock:
            self.seq += 1
            seq, known, pending = self.seq, self.known, self.pending
            changed = False
            for name, value in zip(names, values, strict=True):
                self.heard_at[name] = seq
                self._recent.append((seq, name, value))
                waiting = pending.get(name)
                if waiting is None:
                    changed |= self._apply(name, value, reply=False)
                    continue
                # Our own invalidation is still on its way: a message before it is older than
                # our write, so it may only make the name unknown; our own one settles it.
                if value in waiting:
                    waiting.remove(value)
                if waiting:
                    changed |= known.pop(name, None) is not None
                else:
                    del pending[name]
                    self.floor.pop(name, None)
                    changed |= known.get(name) is not None and known[name] != value
                    known[name] = value
            if changed:
                self.epoch += 1

    #: A synchronous backend's listener and tests call the message path by this name too.
    learn = heard

    def learn_since(self, names: Sequence[str], values: Sequence[int], mark: int) -> bool:
        """Learn a backend reply to a request sent at ``mark``; False if L1 was wiped since.

        A name with a message heard after ``mark`` (or an own invalidation in flight) is not
        learned: the reply may have been read before that message's increment.
        """
        with self._lock:
            if mark < self._wiped_at:
                return False
            heard_at, pending = self.heard_at, self.pending
            changed = False
            for name, value in zip(names, values, strict=True):
                if name in pending or heard_at.get(name, -1) > mark:
                    continue
                changed |= self._apply(name, value, reply=True)
            if changed:
                self.epoch += 1
            return True

    def learn_own(self, names: Sequence[str], values: Sequence[int], mark: int) -> None:
        """Learn this process's own invalidation result (sent at ``mark``): read your writes."""
        with self._lock:
            if mark < self._wiped_at:
                return  # wiped meanwhile: nothing stamped before our write is left
            known, pending = self.known, self.pending
            for name, value in zip(names, values, strict=True):
                heard = self._heard_since(name, value, mark)
                if heard is None:
                    # Too many messages to tell whether ours came back: start afresh.
                    self._wipe()
                    break
                if heard:
                    continue  # ours came back already and the channel's rules applied
                waiting = pending.setdefault(name, [])
                waiting.append(value)
                if len(waiting) == 1:
                    self.floor.pop(name, None)
                    known[name] = value
                else:
                    known.pop(name, None)  # two own writes in flight: wait for both
            if len(pending) > self._known_max:
                self._wipe()
            self.epoch += 1

    def _heard_since(self, name: str, value: int, mark: int) -> bool | None:
        """Whether (name, value) was heard after ``mark``; None if the record is too short."""
        if self.heard_at.get(name, -1) <= mark:
            return False
        recent = self._recent
        for seq, n, v in reversed(recent):
            if seq <= mark:
                return False
            if n == name and v == value:
                return True
        return None if recent and recent[0][0] > mark + 1 else False

    def _apply(self, name: str, value: int, reply: bool) -> bool:
        """Apply one value learned in order; True if entries validated before may be invalid."""
        known, floor = self.known, self.floor
        old = known.get(name)
        if reply:
            # A reply is the server's own word (a message can be forged by any client that may
            # PUBLISH): it lifts the floor, so a re-created generation is usable again.
            floor.pop(name, None)
        elif floor and value < floor.get(name, value):
            # Below a generation already seen on the channel: an old value announced again.
            # It can still make the name unknown, never make it known.
            return known.pop(name, None) is not None
        if old is None:
            if len(known) >= self._known_max:
                # Knowledge and the entries that rely on it go together: entries left
                # behind could be re-validated by whatever is learned next.
                self._wipe()
                known[name] = value
                return True
            known[name] = value
            return False
        if value > old:
            known[name] = value
            return True
        if value < old:
            # Generations only grow while they exist: a smaller one was re-created (eviction,
            # restart), is a late copy or is forged. Trust neither: the name is unknown until
            # the next message or reply, and nothing below ``old`` is learned from the channel
            # until a reply confirms it, so announcing an old value twice cannot revive it.
            del known[name]
            floor[name] = old
            return True
        return False

    def forget(self, names: Sequence[str]) -> None:
        """Mark generations unknown."""
        with self._lock:
            for name in names:
                self.known.pop(name, None)
            self.epoch += 1

    def clear(self) -> None:
        """Drop every entry and every known generation."""
        with self._lock:
            self._wipe()
            self.epoch += 1

    def _wipe(self) -> None:
        self.data.clear()
        self.known.clear()
        self.floor.clear()
        self.heard_at.clear()
        self.pending.clear()
        self._recent.clear()
        self.seq += 1
        self._wiped_at = self.seq
        self.resets += 1

    def __len__(self) -> int:
        return len(self.data)
