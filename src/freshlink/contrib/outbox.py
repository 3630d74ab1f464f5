"""The outbox's framework-free part: what a row is, and applying rows to a cache.

A row of the ``freshlink_outbox`` table holds the tags one transaction invalidates
(newline-separated) and the cache namespace they belong to. The SQLAlchemy integration
(:mod:`freshlink.contrib.sqlalchemy`) and the Django app (:mod:`freshlink.contrib.django`)
write the same table layout and relay it with :func:`apply_rows`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError, FreshlinkError
from ..keyspace import MEMORY_SCHEMES, schemes_phrase

__all__ = ["TABLE", "Invalidate", "Pending", "RelayPass", "apply_rows", "check_relay_url"]

#: The outbox table's name.
TABLE = "freshlink_outbox"

logger = logging.getLogger("freshlink")


@dataclass(frozen=True)
class Pending:
    """What the outbox holds: rows, and the age of the oldest (seconds; 0 when empty)."""

    rows: int
    oldest_age: float


@dataclass(frozen=True)
class RelayPass:
    """What one relay pass did."""

    applied: int
    failed: int
    pending: Pending


#: Applies one namespace's tags; raises if the cache did not confirm the invalidation.
Invalidate = Callable[[str, Sequence[str]], None]


def check_relay_url(url: object) -> None:
    """Refuse a cache a relay cannot reach the app servers through: an empty URL, or
    ``memory://`` (the relay's own process), where "applied" would delete rows whose
    invalidation reached nobody."""
    if not isinstance(url, str):
        return  # a ready redis-py client (the plugins' settings allow one)
    scheme = urlsplit(url).scheme.lower()
    if not url or scheme in MEMORY_SCHEMES:
        raise ConfigurationError(
            f"the relay needs the Redis the app servers share ({schemes_phrase(memory=False)}), "
            f"got {url!r}: an invalidation in {url or 'an empty URL'} reaches no other process, "
            "so the outbox rows would be deleted while the servers keep serving the old values"
        )


def apply_rows(rows: Iterable[Any], invalidate: Invalidate) -> tuple[list[Any], int]:
    """Invalidate the tags of ``rows`` (id, namespace, tags), one call per namespace; the ids
    whose invalidation was confirmed, and how many namespaces failed (their rows stay)."""
    by_ns: dict[str, tuple[list[Any], set[str]]] = {}
    for row_id, namespace, tags in rows:
        ids, names = by_ns.setdefault(namespace, ([], set()))
        ids.append(row_id)
        names.update(t for t in tags.split("\n") if t)
    done: list[Any] = []
    failed = 0
    for namespace, (ids, names) in by_ns.items():
        try:
            if names:
                invalidate(namespace, sorted(names))
        except FreshlinkError as exc:
            failed += 1
            logger.warning(
                "freshlink: outbox rows of %s left for the relay: %s",
                namespace,
                exc,
                extra={"freshlink_event": "outbox_apply_failed", "rows": len(ids)},
            )
            continue
        done.extend(ids)
    return done, failed
