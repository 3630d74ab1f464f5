"""FastAPI / Starlette integration (extra ``[fastapi]``).

* :func:`lifespan` opens a :class:`~freshlink.Cache` when the app starts, keeps it in
  ``app.state.freshlink`` and closes it at shutdown (composable with the app's own lifespan);
* :func:`get_cache` / :data:`CacheDep` hand that Cache to a route through ``Depends``;
* :func:`cache_response` caches a GET route's result (keyed and tagged like a cached function)
  and answers ``If-None-Match`` with ``304 Not Modified``; it refuses routes that depend on
  authentication, or on a dependency that takes the ``Request``, unless their key names it
  (:func:`shared_dependency` marks one that returns the same value to every caller).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from ...cache import Cache
from ...errors import ConfigurationError, MissingDependencyError

try:
    from fastapi import Depends
    from starlette.requests import HTTPConnection
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise MissingDependencyError(
        "freshlink.contrib.fastapi needs FastAPI: pip install 'freshlink[fastapi]'"
    ) from exc

from ._auth import shared_dependency
from ._state import STATE_KEY, cache_of
from .responses import cache_response

__all__ = [
    "STATE_KEY",
    "CacheDep",
    "cache_of",
    "cache_response",
    "get_cache",
    "lifespan",
    "shared_dependency",
]

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def lifespan(url: Any = "memory://", *, then: Lifespan | None = None, **options: Any) -> Lifespan:
    """A lifespan that opens ``Cache(url, **options)`` for the app and closes it at shutdown.

    ``url`` may also be a ready :class:`~freshlink.Cache` (it is closed at shutdown too).
    ``then`` is the app's own lifespan, run inside (so it can use the Cache); what it yields
    becomes the lifespan state.
    """
    if isinstance(url, Cache) and options:
        raise ConfigurationError("lifespan(): pass options to Cache(...) or to lifespan, not both")

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        cache = url if isinstance(url, Cache) else Cache(url, **options)
        setattr(app.state, STATE_KEY, cache)
        try:
            if then is None:
                yield None
            else:
                async with then(app) as state:
                    yield state
        finally:
            # Waits for background refreshes, then releases connections and the listener.
            await cache.aclose()
            setattr(app.state, STATE_KEY, None)

    return run


@shared_dependency  # the app's Cache: the same for every caller
def get_cache(connection: HTTPConnection) -> Cache:
    """The dependency ``Depends(get_cache)``: the app's Cache (see :func:`lifespan`)."""
    return cache_of(connection.app)


#: ``cache: CacheDep`` in a route's signature receives the app's Cache.
CacheDep = Annotated[Cache, Depends(get_cache)]
