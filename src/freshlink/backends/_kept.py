"""Which generations a fill must extend: those this process has not extended lately.

Storing an entry extends each of its generations so that it outlives the entry (a
generation that expires first only costs an early miss: it comes back as a fresh random
value no stamp matches). Extending costs a command per generation on every fill, and a tag
is shared by many entries: a borrower's tag is extended by the fill of each of their loans.
So ``WRITE`` extends a generation to the entry's lifetime *plus* ``gen_ttl``, and for the
next ``gen_ttl`` seconds this process's fills that need no more than that skip it.

The record can be wrong only if the generation was deleted in the meantime (eviction, a
flushed server) and re-created by a read, with ``gen_ttl`` to live: entries stored in the
window may then expire early, never later, and the window is ``gen_ttl`` long. A server with
a new run id (restarted) makes the process forget every record at once. Pure bookkeeping:
time is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = ["Kept"]

#: Names remembered at most (then forgotten all at once: the next fills extend again).
MAX_NAMES = 65536


class Kept:
    """The generations this process extended, and until when they are known to live."""

    def __init__(self, gen_ttl: float, clock: Callable[[], float]) -> None:
        self.gen_ttl = gen_ttl
        self._clock = clock
        #: name -> (when this process extended it, the time it lives at least until)
        self._until: dict[str, tuple[float, float]] = {}
        self._run = ""

    def plan(
        self, names: Sequence[str], retain: float | None, run_id: str
    ) -> tuple[str, str, Callable[[bool], bool]]:
        """For a fill kept ``retain`` seconds (None: for ever) on the server ``run_id``: the
        ms to extend to, one flag per name ("1": extend it), and what to pass the fill's
        outcome to (it records the extensions of a fill that was stored, and returns it)."""
        self._on(run_id)
        now = self._clock()
        need = math.inf if retain is None else now + retain
        flags = "".join("0" if self._lives(name, now, need) else "1" for name in names)
        ext = math.inf if retain is None else retain + self.gen_ttl
        ext_ms = "-1" if retain is None else str(max(int(ext * 1000), 1))

        def stored(ok: bool) -> bool:
            if ok:  # the script extended the flagged names (only a stored fill does)
                if len(self._until) > MAX_NAMES:
                    self._until.clear()
                for name, flag in zip(names, flags, strict=True):
                    if flag == "1":
                        self._until[name] = (now, now + ext)
            return ok

        return ext_ms, flags, stored

    def created(
        self, names: Sequence[str], current: Sequence[int], seed: int, lives: float, run_id: str
    ) -> None:
        """A read on the server ``run_id`` created, with ``lives`` seconds to live, the
        generations of ``names`` whose value is ``seed`` plus their position (1, 2...): a fill
        stored soon need not extend them. (Another value equal to that by chance only costs
        an early miss, as above.)"""
        self._on(run_id)
        now = self._clock()
        if len(self._until) > MAX_NAMES:
            self._until.clear()
        for i, (name, value) in enumerate(zip(names, current, strict=False), 1):
            if value == seed + i:
                self._until[name] = (now, now + lives)

    def _on(self, run_id: str) -> None:
        # A restarted server lost every generation: forget what was known of them.
        if run_id != self._run:
            self._until.clear()
            self._run = run_id

    def _lives(self, name: str, now: float, need: float) -> bool:
        known = self._until.get(name)
        return known is not None and now - known[0] < self.gen_ttl and known[1] >= need
