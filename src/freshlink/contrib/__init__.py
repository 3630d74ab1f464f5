"""What the Flask and Django plugins share; nothing here imports a framework.

The pieces live in their own modules, re-exported here:

* :mod:`.settings`: :func:`parse_settings` turns a ``FRESHLINK`` mapping into
  :class:`~freshlink.Cache` options plus the plugins' own (:class:`Settings`), collecting every
  problem at once;
* :mod:`._proxy`: :class:`CacheProxy`, decorators applied at import time that resolve the
  current Cache (the Flask app's, or the one built from Django settings) on each call;
* :mod:`.ratelimit` and :mod:`.reports`: the "report stale" endpoint's :class:`RateLimiter`
  and :class:`StaleReports`;
* :mod:`._payload`: the metrics endpoint's :func:`metrics_payload`;
* :mod:`freshlink.inspection`: :func:`describe_cache` and :func:`describe_entry`, behind the
  ``stats`` / ``inspect`` commands;
* :mod:`._plugin`: the one core (state, endpoint bodies, commands) both plugins adapt.
"""

from __future__ import annotations

from ..inspection import describe_cache, describe_entry
from ._payload import metrics_payload, require_prometheus
from ._proxy import Bindings, CacheProxy
from .ratelimit import RateLimiter
from .reports import StaleReports
from .settings import (
    KNOWN_KEYS,
    URL_SCHEMES,
    Problem,
    Settings,
    build_cache,
    parse_settings,
    resolve_registry,
    settings_problems,
)

__all__ = [
    "KNOWN_KEYS",
    "URL_SCHEMES",
    "Bindings",
    "CacheProxy",
    "Problem",
    "RateLimiter",
    "Settings",
    "StaleReports",
    "build_cache",
    "describe_cache",
    "describe_entry",
    "metrics_payload",
    "parse_settings",
    "require_prometheus",
    "resolve_registry",
    "settings_problems",
]
