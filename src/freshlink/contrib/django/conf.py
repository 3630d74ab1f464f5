"""The ``FRESHLINK`` settings dict and the Cache built from it (rebuilt when it changes)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings

from ...cache import Cache
from ...errors import ConfigurationError
from .._plugin import PluginState
from .._proxy import CacheProxy
from ..reports import StaleReporters
from ..settings import KNOWN_KEYS, build_cache, parse_settings

__all__ = [
    "DJANGO_KEYS",
    "DjangoState",
    "cache",
    "get_cache",
    "get_state",
    "label",
    "outbox_enabled",
    "raw_settings",
    "reporters",
    "reset",
    "stale_reporter",
]

#: Option keys of the ``FRESHLINK`` dict. The endpoint paths and on/off switch are Flask's:
#: in Django the views are enabled by including ``freshlink.contrib.django.urls``.
DJANGO_KEYS = (KNOWN_KEYS - {"metrics_url", "report_stale", "report_stale_url"}) | {"outbox"}

Reporter = Callable[[Any], object]
F = TypeVar("F", bound=Reporter)


def label(key: str) -> str:
    """How an option is named in ``settings.py``: ``FRESHLINK['URL']``."""
    return f"FRESHLINK[{key.upper()!r}]"


def raw_settings() -> Any:
    """The ``FRESHLINK`` setting as written (an empty dict when unset)."""
    return getattr(settings, "FRESHLINK", {})


#: The Cache built from ``FRESHLINK`` plus its stale-report counter and rate limiter.
DjangoState = PluginState

_reporters = StaleReporters()
_state: DjangoState | None = None
_lock = threading.Lock()


def get_state() -> DjangoState:
    """The current state, built from ``settings.FRESHLINK`` on first use."""
    global _state
    state = _state
    if state is None:
        with _lock:
            if _state is None:
                raw = raw_settings()
                if not isinstance(raw, dict):
                    raise ConfigurationError(
                        f"settings.FRESHLINK must be a dict, got {type(raw).__name__}"
                    )
                parsed = parse_settings(raw, label, DJANGO_KEYS)
                _state = DjangoState(build_cache(parsed), parsed, _reporters)
            state = _state
    return state


def outbox_enabled() -> bool:
    """``FRESHLINK['OUTBOX']``: invalidations go through the outbox table (default off)."""
    raw = raw_settings()
    value = {str(k).lower(): v for k, v in raw.items()}.get("outbox", False)
    if not isinstance(value, bool):
        raise ConfigurationError(f"{label('outbox')} must be True or False, got {value!r}")
    return value


def get_cache() -> Cache:
    """The Cache configured by ``settings.FRESHLINK`` (built once, rebuilt after a change)."""
    return get_state().cache


def reset() -> None:
    """Forget (and close) the current Cache; the next :func:`get_cache` builds a new one."""
    global _state
    with _lock:
        old, _state = _state, None
    if old is not None:
        old.close()  # its metrics too: the next state reports under the same cache name


#: Decorators usable at import time (``@cache.cached``, ``@cache.invalidates``...): each call
#: uses the Cache that ``settings.FRESHLINK`` configures at that moment.
cache = CacheProxy(get_state)


def stale_reporter(name: str) -> Callable[[F], F]:
    """Register the refresh the "report stale" view runs for entry ``name``.

    The function receives the ``HttpRequest`` (to know the user) and typically calls
    ``my_cached_function.refresh(request.user.pk)``.
    """
    return _reporters.register(name)


def reporters() -> dict[str, Reporter]:
    """The registered stale reporters by name."""
    return dict(_reporters)
