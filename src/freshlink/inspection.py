"""What a cache holds, as data: the ``freshlink`` command and both plugins only format it.

* :func:`inspect_entry` reads one stored entry with its stamped and current generations
  (:class:`EntryReport`); :func:`entry_lines` / :func:`entry_json` are the one text and JSON
  form every ``inspect`` command prints.
* :func:`describe_cache` is what a live Cache says about itself (the plugins' ``stats``).
* :func:`count_keys` counts a namespace's keys by kind in Redis (the command's ``stats``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import FreshlinkError
from .keys import safe_key
from .keyspace import Keyspace

if TYPE_CHECKING:
    from .cache import Cache

__all__ = [
    "EntryReport",
    "GenerationReport",
    "NoEntryError",
    "count_keys",
    "describe_cache",
    "describe_entry",
    "entry_json",
    "entry_lines",
    "inspect_entry",
]


class NoEntryError(LookupError):
    """No entry is stored under the key asked about."""


@dataclass(frozen=True, slots=True)
class GenerationReport:
    """One generation an entry was stamped with, and its value now."""

    name: str
    stamped: int
    current: int

    @property
    def ok(self) -> bool:
        """Whether the generation has not moved on since the entry was stored."""
        return self.stamped == self.current


@dataclass(frozen=True, slots=True)
class EntryReport:
    """One stored entry: where it lives, its age and TTL, its generations and its value."""

    key: str
    backend_key: str
    created: float
    ttl: float | None
    ttl_left: float | None
    load_time: float
    size: int
    generations: tuple[GenerationReport, ...]
    #: The decoded value, verified like a read would verify it (None if ``error``).
    value: Any
    #: Why the value could not be decoded, or None.
    error: str | None

    @property
    def valid(self) -> bool:
        """Whether a read would serve it: every generation current and the TTL not run out."""
        fresh = self.ttl_left is None or self.ttl_left > 0
        return fresh and all(g.ok for g in self.generations)


def inspect_entry(cache: Cache, key: str) -> EntryReport:
    """The stored entry of ``key`` (or of its :func:`~freshlink.keys.safe_key` form).

    Raises :class:`NoEntryError` when there is none.
    """
    found = key
    entry = cache.backend.get_entry(cache.keyspace.entry(found))
    if entry is None and safe_key(key) != key:
        found = safe_key(key)
        entry = cache.backend.get_entry(cache.keyspace.entry(found))
    if entry is None:
        raise NoEntryError(f"no entry {key!r} in namespace {cache.namespace!r}")
    current = cache.backend.current(entry.names)
    value: Any = None
    error = None
    try:
        value = cache._engine.entries.decode_entry(found, entry)
    except FreshlinkError as exc:
        error = str(exc)
    left = None if entry.ttl is None else entry.created + entry.ttl - cache.clock()
    return EntryReport(
        key=found,
        backend_key=cache.keyspace.entry(found),
        created=entry.created,
        ttl=entry.ttl,
        ttl_left=left,
        load_time=entry.load_time,
        size=len(entry.payload),
        generations=tuple(
            GenerationReport(n, s, c)
            for n, s, c in zip(entry.names, entry.stamps, current, strict=True)
        ),
        value=value,
        error=error,
    )


def _preview(report: EntryReport, width: int) -> str:
    if report.error is not None:
        shown = f"<cannot decode: {report.error}>"
    else:
        shown = json.dumps(report.value, default=str)
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def entry_json(report: EntryReport, width: int = 200) -> dict[str, Any]:
    """The JSON form of a report (``freshlink inspect --json``); the value cut to ``width``."""
    return {
        "key": report.key,
        "valid": report.valid,
        "ttl_left": report.ttl_left,
        "load_time": report.load_time,
        "size": report.size,
        "generations": [
            {"name": g.name, "stamped": g.stamped, "current": g.current, "ok": g.ok}
            for g in report.generations
        ],
        "value": _preview(report, width),
    }


def entry_lines(report: EntryReport, width: int = 200) -> list[str]:
    """The text form of a report, as every ``inspect`` command prints it."""
    left = report.ttl_left
    ttl = "no expiry" if left is None else f"{left:.1f} s" + (" (expired)" if left <= 0 else "")
    lines = [
        f"key        {report.key}",
        f"valid      {report.valid}",
        f"ttl left   {ttl}",
        f"size       {report.size} bytes, loaded in {report.load_time * 1000:.1f} ms",
    ]
    for g in report.generations:
        mark = "ok" if g.ok else "INVALIDATED"
        lines.append(f"  {g.name}: stamped {g.stamped}, current {g.current}  {mark}")
    lines.append(f"value      {_preview(report, width)}")
    return lines


def describe_entry(cache: Cache, key: str, *, preview: int = 200) -> list[str] | None:
    """:func:`entry_lines` of the stored entry of ``key``, or None when there is none."""
    try:
        return entry_lines(inspect_entry(cache, key), preview)
    except NoEntryError:
        return None


# ---------------------------------------------------------------------------- a live Cache


def _mode(cache: Cache) -> str:
    local = cache.local
    if local is None:
        return "strict (no L1: every read checked in the backend)"
    if cache.backend.synchronous:
        return "strict with L1 (in-process backend: L1 learns every invalidation at once)"
    if local.mode == "strict":
        return "strict with L1 (L1 hits confirmed in the backend)"
    return f"bounded (L1 may lag an invalidation by at most {local.max_staleness:g} s)"


def describe_cache(cache: Cache) -> list[tuple[str, str]]:
    """What a Cache says about itself: URL, namespace, mode, L1 size, breaker state..."""
    near = cache.near
    local = cache.local
    ttl = cache.freshness.ttl
    rows = [
        ("name", cache.name),
        ("url", _redact(cache.url)),
        ("namespace", cache.namespace),
        ("backend", _backend_name(cache)),
        ("mode", _mode(cache)),
        ("default ttl", "none" if ttl is None else f"{ttl:g} s"),
        ("signed", "yes" if cache.codec.signed else "no"),
    ]
    if near is not None and local is not None:
        trusted = near.trusted(cache.monotonic())
        rows.append(("l1 entries", f"{len(near)} / {local.maxsize}"))
        rows.append(("l1 trusted", "yes" if trusted else "no (flushed until the channel is live)"))
    else:
        rows.append(("l1 entries", "no L1"))
    breaker = cache.breaker
    rows.append(("breaker", breaker.state if breaker is not None else "none (in-process)"))
    rows.append(("pending refreshes", str(cache.refresher.pending())))
    rows.append(("dropped refreshes", str(cache.refresher.dropped)))
    return rows


def _backend_name(cache: Cache) -> str:
    # Name the real backend, not the circuit-breaking wrapper around it.
    inner = getattr(cache.backend, "inner", None)
    if inner is not None:
        return f"{type(inner).__name__} (with circuit breaker)"
    return type(cache.backend).__name__


def _redact(url: str) -> str:
    # Never print a password from the URL in a terminal or a log.
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


# ---------------------------------------------------------------------------- a namespace


def count_keys(client: Any, namespace: str, limit: int) -> tuple[dict[str, int], bool]:
    """Keys of ``namespace`` in a redis-py client, by kind; True if ``limit`` cut the count short.

    The kinds are those of :meth:`Keyspace.kinds` (entries, generations, leases).
    """
    kinds = Keyspace(namespace).kinds()
    counts = dict.fromkeys(kinds.values(), 0)
    scanned = 0
    # On a cluster every key starts with its {hash tag}; scan_iter visits every master.
    cluster = type(client).__module__.startswith("redis.cluster")
    match = ("{*}" if cluster else "") + f"{namespace}:*"
    for raw in client.scan_iter(match=match, count=1000):
        key = raw.decode()
        if cluster and key.startswith("{"):
            key = key.partition("}")[2]
        for prefix, kind in kinds.items():
            if key.startswith(prefix):
                counts[kind] += 1
                break
        scanned += 1
        if scanned >= limit:
            break
    return counts, scanned >= limit
