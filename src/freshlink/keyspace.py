"""Where every name freshlink writes lives: key prefixes, channels and cache URL schemes.

One namespace ``ns`` owns, in the backend:

* ``ns:e:<key>``: an entry (payload, the generation names it was stamped with, their stamps);
* ``ns:k:<key>``: the generation of the entry's own key (bumped by ``cache.delete`` and by a
  cached function's ``.invalidate(...)``);
* ``ns:t:<tag>``: a tag's generation (``invalidate(tag)`` bumps it);
* ``ns:l:ns:e:<key>``: the lease of whoever is filling the entry (cross-process single-flight;
  on a cluster prefixed with the entry's hash tag, so both live in one slot), and
  ``<lease>:w``, the mark of a process waiting for that fill (the Lua scripts derive it);
* channels ``ns:inv`` (invalidations) and ``ns:fill`` (fill outcomes for waiters).

Nothing else in the package spells these out: backends, the CLI and the plugins ask here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from .keys import safe_key

__all__ = [
    "CLUSTER_SCHEMES",
    "REDIS_SCHEMES",
    "SCHEMES",
    "SENTINEL_SCHEMES",
    "Keyspace",
    "schemes_phrase",
]

ENTRY: Final = ":e:"
OWN: Final = ":k:"
TAG: Final = ":t:"
LEASE: Final = ":l:"

#: Cache URL schemes by backend, in the order messages and docs name them.
MEMORY_SCHEMES: Final = ("memory",)
REDIS_SCHEMES: Final = ("redis", "rediss", "unix")
CLUSTER_SCHEMES: Final = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES: Final = ("redis+sentinel", "rediss+sentinel")
#: Every scheme :func:`freshlink.backends.open_backend` accepts.
SCHEMES: Final = MEMORY_SCHEMES + REDIS_SCHEMES + CLUSTER_SCHEMES + SENTINEL_SCHEMES


def schemes_phrase(*, memory: bool = True) -> str:
    """The one phrase naming the URLs a cache opens: ``"memory://, redis://, … or rediss+sentinel://"``."""
    shown = [s + "://" for s in (SCHEMES if memory else SCHEMES[len(MEMORY_SCHEMES) :])]
    return ", ".join(shown[:-1]) + " or " + shown[-1]


class Keyspace:
    """The backend names of one namespace (see the module docstring for the layout)."""

    __slots__ = (
        "entry_prefix",
        "fills",
        "invalidations",
        "lease_prefix",
        "namespace",
        "own_prefix",
        "tag_prefix",
    )

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.entry_prefix = namespace + ENTRY
        self.own_prefix = namespace + OWN
        self.tag_prefix = namespace + TAG
        self.lease_prefix = namespace + LEASE
        #: Pub/sub channel of invalidations (generation names and their new values).
        self.invalidations = namespace + ":inv"
        #: Pub/sub channel of fill outcomes, for processes waiting on a lease.
        self.fills = namespace + ":fill"

    def entry(self, key: str) -> str:
        """The backend key of the entry stored under ``key``."""
        return self.entry_prefix + key

    def own(self, key: str) -> str:
        """The generation name of the entry's own key."""
        return self.own_prefix + key

    def tag(self, tag: str) -> str:
        """The generation name of a tag."""
        return self.tag_prefix + safe_key(tag)

    def names(self, key: str, tags: Sequence[str]) -> tuple[str, ...]:
        """Generation names an entry is stamped with: its own key's, then its tags'."""
        return (self.own_prefix + key, *(self.tag_prefix + safe_key(t) for t in tags))

    def lease(self, entry_key: str) -> str:
        """The lease name guarding fills of the entry stored at ``entry_key``."""
        return self.lease_prefix + entry_key

    def kinds(self) -> dict[str, str]:
        """Prefix -> what lives under it, for tools that list the keyspace."""
        return {
            self.entry_prefix: "entries",
            self.own_prefix: "generations",
            self.tag_prefix: "generations",
            self.lease_prefix: "leases",
        }
