"""Values to stamped entries and back: serializing, signing, decoding, judging, filling L1.

An entry is a serialized value plus the generation names it depends on and the generations
(stamps) it was loaded under. Signed payloads bind the stamps and the entry key into their MAC,
so a payload replayed under another key or generation is rejected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final

from .backends.base import Entry
from .errors import FreshlinkError, SerializationError, TamperedPayloadError
from .events import Event, Events, logger
from .local import NearCache, NearEntry
from .policy import Action, Freshness, decide, fresh_horizon, jittered_ttl
from .serializers import Codec

__all__ = ["UNREADABLE", "Entries"]

#: What decoding returns for an entry that cannot be read (already logged and reported).
UNREADABLE: Final = object()

# Bytes an L1 entry costs beyond its serialized payload (the entry object, its stamps, the
# dict slot), measured with tracemalloc for a 3-tag entry; used by Local(max_bytes=).
_NEAR_OVERHEAD = 600


class Entries:
    """Stamping, encoding and decoding of one cache's entries, and filling its L1."""

    def __init__(
        self,
        codec: Codec,
        events: Events,
        near: NearCache | None,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        rng: Callable[[], float],
    ) -> None:
        self.codec = codec
        self.events = events
        self.near = near
        self.clock = clock
        self.monotonic = monotonic
        self.rng = rng

    def context(self, key: str, names: Sequence[str], stamps: Sequence[int]) -> bytes:
        # What a signed payload's MAC covers besides the value: the entry key and the
        # generations, so a payload replayed under another key or generation is rejected.
        if not self.codec.signed:
            return b""
        return ("\x00".join((key, *names)) + "\x00" + ",".join(map(str, stamps))).encode(
            "utf-8", "surrogatepass"
        )

    def decode_entry(self, key: str, entry: Entry) -> Any:
        """Decode a stored entry, verifying its signature like a read would (raises if bad)."""
        return self.codec.decode(entry.payload, self.context(key, entry.names, entry.stamps))

    def value(self, fname: str, key: str, entry: Entry) -> Any:
        """The decoded value of ``entry``, or :data:`UNREADABLE` (logged and reported)."""
        try:
            return self.decode_entry(key, entry)
        except (TamperedPayloadError, SerializationError) as exc:
            logger.warning(
                "freshlink: unreadable entry %s treated as a miss: %s",
                key,
                exc,
                extra={"freshlink_key": key, "freshlink_function": fname},
            )
            if self.events.error:
                self.events.emit(Event("error", fname, key, "l2", error=exc))
            return UNREADABLE

    def loaded(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        stamps: Sequence[int],
        value: Any,
        policy: Freshness,
        took: float,
    ) -> tuple[Entry, Any, float | None]:
        """Stamp and serialize (and sign) a loaded value.

        Returns the entry, the decoded copy that L1 and later callers get (never the loader's
        own object, which the caller may mutate), and the entry's retention in the backend.
        """
        names, stamps = tuple(names), tuple(stamps)
        ttl = jittered_ttl(policy.ttl_for(value), policy.jitter, self.rng)
        try:
            payload = self.codec.encode(value, self.context(key, names, stamps))
        except FreshlinkError as exc:
            raise type(exc)(f"{fname}: {exc}") from exc
        entry = Entry(payload, names, stamps, self.clock(), ttl, took)
        copy = self.value(fname, key, entry)
        if copy is UNREADABLE:  # a serializer that cannot read its own output
            raise SerializationError(f"{fname}: the serializer could not decode what it wrote")
        return entry, copy, policy.retain(ttl)

    def judge(self, entry: Entry, policy: Freshness) -> tuple[Action, float | None]:
        """What to do with a stored entry now, and its seconds of freshness left."""
        age = self.clock() - entry.created
        left = None if entry.ttl is None else entry.ttl - age
        return decide(policy, age, entry.ttl, entry.load_time, self.rng), left

    def judge_near(self, e: NearEntry, policy: Freshness) -> tuple[Action, float | None]:
        """:meth:`judge` for an L1 entry (its age on the monotonic clock)."""
        age = self.monotonic() - e.born
        left = None if e.ttl is None else e.ttl - age
        return decide(policy, age, e.ttl, e.load_time, self.rng), left

    def fill_near(
        self, near_key: Hashable, value: Any, entry: Entry, policy: Freshness, mark: int
    ) -> None:
        """Remember a decoded value in L1 (if the reply is not older than an L1 wipe)."""
        near = self.near
        if near is None or not near.learn_since(entry.names, entry.stamps, mark):
            return
        now = self.monotonic()
        born = now - max(self.clock() - entry.created, 0.0)
        ttl = entry.ttl
        hard = math.inf if ttl is None else born + ttl + policy.grace
        if near.config.ttl is not None:
            hard = min(hard, now + near.config.ttl)
        # Until ``fresh`` the inlined hot path may serve it without asking the policy.
        horizon = fresh_horizon(policy, ttl, entry.load_time)
        fresh = math.inf if horizon is None else born + horizon
        if policy.expiring_within is not None and ttl is not None:
            fresh = min(fresh, born + ttl - policy.expiring_within)
        near.put(
            near_key,
            NearEntry(
                value,
                entry.names,
                entry.stamps,
                hard,
                fresh,
                born,
                ttl,
                entry.load_time,
                entry.created,
                len(entry.payload) + _NEAR_OVERHEAD,
            ),
        )

    def mark(self) -> int:
        """L1's position before a backend call (see :meth:`NearCache.mark`); 0 without L1."""
        return self.near.mark() if self.near is not None else 0
