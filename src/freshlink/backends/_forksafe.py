"""redis-py connection pools that survive a ``fork()`` made while another thread was inside them.

A forked child (gunicorn ``--preload``, Celery prefork, multiprocessing) inherits the parent's
pools, and redis-py resets a pool the first time the child touches it: on its first command,
or when the child drops the parent's client and its ``__del__`` closes the pool. redis-py 8's
``ConnectionPool.reset()`` takes the pool's lock to do so. A lock that some other thread of
the parent held at the instant of the fork (freshlink's pool warm-up, the channel thread
opening its connection, any app thread in ``get_connection``) stays held in the child for
ever, since that thread does not exist there: the child's request hangs on its first Redis
call, with no timeout (found by the gunicorn ``--preload`` test, about 1 start in 8).

The child therefore gives every pool freshlink made or was handed fresh locks before anything
can touch it, as CPython does for its own locks (``logging``'s handlers,
``_at_fork_reinit``). Nothing else can hold them there: the child has one thread, the one that
forked.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any

__all__ = ["track"]

logger = logging.getLogger("freshlink")

#: Clients and pools whose locks a forked child re-creates (held weakly: a closed one goes).
_tracked: weakref.WeakSet[Any] = weakref.WeakSet()


def track(*objects: Any) -> None:
    """Have a forked child re-create the pool locks of these sync clients or pools."""
    for obj in objects:
        if obj is not None:
            _tracked.add(obj)


def _pools(obj: Any) -> list[Any]:
    """The connection pools behind a client (one per node of a cluster), or ``obj`` itself."""
    nodes = getattr(obj, "get_nodes", None)
    if callable(nodes):
        return [
            n.redis_connection.connection_pool
            for n in nodes()
            if getattr(n, "redis_connection", None) is not None
        ]
    return [getattr(obj, "connection_pool", obj)]


def _reinit(pool: Any) -> None:
    for name in ("_lock", "_fork_lock"):
        reinit = getattr(getattr(pool, name, None), "_at_fork_reinit", None)
        if reinit is not None:
            reinit()


def _after_in_child() -> None:
    for obj in list(_tracked):
        try:
            for pool in _pools(obj):
                _reinit(pool)
        except Exception:  # the fork must go on; at worst that pool hangs as it would have
            logger.exception("freshlink: could not reset a connection pool's locks after fork")


# Registered once, at import, before any Engine registers its own after-fork hook (a backend
# module imports this one): hooks run in registration order, so the locks are fresh before
# the engine drops the parent's client.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_in_child)
