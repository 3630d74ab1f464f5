"""A history of reads and writes, and the checker of freshlink's staleness guarantee.

Times are ``time.monotonic()`` readings, which on Linux share one clock across processes, so
histories recorded by many processes on one machine can be merged and compared directly.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ReadRecord", "Violation", "WriteRecord", "check"]


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """A write of ``version`` to ``item``; ``acked`` is when the invalidation returned (or None)."""

    item: str
    version: int
    started: float
    acked: float | None


@dataclass(frozen=True, slots=True)
class ReadRecord:
    """A cached read of ``item`` that began at ``started`` and returned ``version``."""

    item: str
    version: int
    started: float
    ended: float


@dataclass(frozen=True, slots=True)
class Violation:
    """A read that returned a version older than one acknowledged before it began."""

    read: ReadRecord
    expected_at_least: int
    acked: float

    def __str__(self) -> str:
        late = self.read.started - self.acked
        return (
            f"read of {self.read.item} at {self.read.started:.6f} returned v{self.read.version}, "
            f"but v{self.expected_at_least} was acknowledged {late * 1000:.3f} ms before it began"
        )


def check(
    writes: Iterable[WriteRecord], reads: Iterable[ReadRecord], bound: float = 0.0
) -> list[Violation]:
    """Reads that returned a version older than the newest one acknowledged ``bound`` before.

    ``bound=0`` checks strict mode: a read that starts after a write was acknowledged must
    return that version or a newer one. Unacknowledged writes (their invalidation raised)
    promise nothing and are ignored.
    """
    acked: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for w in writes:
        if w.acked is not None:
            acked[w.item].append((w.acked, w.version))
    # Running maximum of versions by acknowledgement time, per item.
    times: dict[str, list[float]] = {}
    best: dict[str, list[int]] = {}
    for item, lst in acked.items():
        lst.sort()
        times[item] = [t for t, _ in lst]
        running, top = [], 0
        for _, v in lst:
            top = max(top, v)
            running.append(top)
        best[item] = running
    out = []
    for r in reads:
        ts = times.get(r.item)
        if not ts:
            continue
        i = bisect.bisect_left(ts, r.started - bound) - 1
        if i >= 0 and r.version < best[r.item][i]:
            out.append(Violation(r, best[r.item][i], ts[i]))
    return out
