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
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cachetools import FIFOCache

from .errors import ConfigurationError

__all__ = ["Local", "NearCache", "NearEntry"]

Mode = Literal["bounded", "strict"]


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
        "ttl",
        "value",
        "values",
    )

    def __init__(
        self,
        value: Any,
        names: tuple[str, ...],
        values: tuple[int, ...],
        expires: float,
        fresh: float | None = None,
        born: float = 0.0,
        ttl: float | None = None,
        load_time: float = 0.0,
        created: float = 0.0,
        size: int = 0,
    ) -> None:
        self.value = value
        # Names and values as two tuples: the names tuple is the one the function's key memo
        # and the backend entry already hold, so an L1 entry does not copy it.
        self.names = names
        self.values = values
        self.expires = expires
        self.fresh = expires if fresh is None else min(fresh, expires)
        self.born = born
        self.ttl = ttl
        self.load_time = load_time
        self.created = created  # wall-clock creation time of the backend entry
        self.size = size  # serialized size plus a fixed overhead: what max_bytes counts
        # -1 never equals an epoch, so a new entry is validated against ``known`` on first use.
        self.epoch = -1

    @property
    def stamps(self) -> tuple[tuple[str, int], ...]:
        """(name, generation) pairs the entry was stamped with."""
        return tuple(zip(self.names, self.values, strict=True))


def _entry_size(entry: NearEntry) -> int:
    return entry.size


class NearCache:
    """The L1 store plus the generations this process knows to be current."""

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
        self.floor: dict[str, int] = {}  # generations forgotten after a regression, per name
        self._known_max = config.maxsize * 8
        self._lock = threading.RLock()
        self.epoch = 0
        # Bumped whenever ``known`` is wiped. A backend reply read before a wipe may be older
        # than an invalidation message the wipe erased, so it must not be learned (learn_since).
        self.resets = 0
        # Monotonic time until which L1 may be trusted. A synchronous backend trusts it for
        # ever; a channel-backed one moves it forward on each proof of liveness.
        self.trusted_until = math.inf

    def get(self, key: Hashable, now: float) -> NearEntry | None:
        """The entry under ``key`` if it is valid now, else None (the slow-path check)."""
        try:
            e = self.data[key]
        except KeyError:
            return None
        if now >= e.expires or now >= self.trusted_until:
            return None
        epoch = self.epoch  # read before checking, so a concurrent bump forces a re-check
        if e.epoch != epoch:
            known = self.known
            for name, value in zip(e.names, e.values):  # noqa: B905 - equal by construction
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

    def trust(self, until: float) -> None:
        """The channel proved delivery: L1 may be trusted until ``until`` (monotonic)."""
        if until > self.trusted_until:
            self.trusted_until = until

    def distrust(self) -> None:
        """The channel is lost or restarting: flush L1 and stop trusting it until proven."""
        self.trusted_until = -math.inf
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

    def learn(self, names: Sequence[str], values: Sequence[int]) -> None:
        """Record generations seen in a backend reply or an invalidation message.

        Generations only grow while they exist, so a smaller value than the known one can only
        be a late reply, a re-created generation or a forged message: forget the name (entries
        stamped with it go to the backend) rather than trust either value. The forgotten value is
        kept as a floor, so nothing below it is learned again until L1 is wiped: announcing an
        old generation twice cannot make an invalidated entry valid.
        """
        with self._lock:
            known, floor = self.known, self.floor
            changed = False
            for name, value in zip(names, values, strict=True):
                old = known.get(name)
                if floor and value < floor.get(name, value):
                    continue  # below a generation already seen: never trusted again
                if old is None or value > old:
                    if old is not None:
                        changed = True
                    if len(known) >= self._known_max:
                        # Knowledge and the entries that rely on it go together: entries left
                        # behind could be re-validated by whatever is learned next.
                        self._wipe()
                        changed = True
                    known[name] = value
                elif value < old:
                    del known[name]
                    floor[name] = old
                    changed = True
            if changed:
                self.epoch += 1

    def learn_since(self, names: Sequence[str], values: Sequence[int], resets: int) -> bool:
        """Learn a reply read while ``resets`` was current; False if ``known`` was wiped since."""
        with self._lock:
            if self.resets != resets:
                return False
            self.learn(names, values)
            return self.resets == resets

    def forget(self, names: Sequence[str]) -> None:
        """Mark generations unknown (after this process invalidated them)."""
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
        self.resets += 1

    def __len__(self) -> int:
        return len(self.data)
