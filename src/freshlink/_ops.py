"""The requests the read path and the writes yield instead of doing I/O.

A :class:`Call` to the backend, :data:`LOAD` to run the loader, a :class:`SingleFlight` to run
sub-steps under single-flight, a :class:`WaitFill` for another process's fill, a :class:`Spawn`
for a background refresh. :mod:`freshlink._steps` performs them for the read path,
:class:`freshlink._writes.Writes` the calls of a write.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["LOAD", "Call", "Op", "ReadKey", "SingleFlight", "Spawn", "Steps", "WaitFill"]


@dataclass(frozen=True, slots=True)
class Call:
    """Call the backend method ``name`` (``a`` + name in async code) with ``args``."""

    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class SingleFlight:
    """Run ``steps()`` under single-flight keyed by ``key``; send back its result.

    A caller that joins a flight already running runs ``follow()`` first, if given.
    """

    key: Hashable
    steps: Callable[[], Steps]
    follow: Callable[[], Steps] | None = None


@dataclass(frozen=True, slots=True)
class ReadKey:
    """Read the entry ``key`` (coalesced with the process's concurrent reads of it)."""

    key: str
    names: Sequence[str]
    #: Seconds a fill would keep the entry (see :meth:`Engine.read_key`).
    keep: float = 0.0


@dataclass(frozen=True, slots=True)
class WaitFill:
    """Wait for another process's fill of ``key``; send back (outcome, valid read or None)."""

    key: str
    timeout: float
    names: Sequence[str]
    #: The generations the waiter's own read saw: an entry a notice carries is taken only if
    #: stamped with exactly these (see :func:`freshlink._steps.run`).
    stamps: tuple[int, ...] = ()


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

Op = Call | ReadKey | SingleFlight | WaitFill | Spawn | _Load
Steps = Generator[Op, Any, Any]
