"""Where an app keeps its Cache: ``app.state.freshlink``."""

from __future__ import annotations

from typing import Any

from ...cache import Cache
from ...errors import ConfigurationError

__all__ = ["STATE_KEY", "cache_of"]

#: The attribute of ``app.state`` that holds the app's Cache.
STATE_KEY = "freshlink"


def cache_of(app: Any) -> Cache:
    """The Cache that :func:`~freshlink.contrib.fastapi.lifespan` opened for ``app``."""
    cache = getattr(app.state, STATE_KEY, None)
    if not isinstance(cache, Cache):
        raise ConfigurationError(
            "no freshlink Cache on this app: create it with "
            "FastAPI(lifespan=freshlink.contrib.fastapi.lifespan(url)), or set "
            f"app.state.{STATE_KEY} = Cache(...) in your own lifespan"
        )
    return cache
