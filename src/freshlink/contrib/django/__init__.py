"""Django integration (extra ``[django]``): add ``"freshlink.contrib.django"`` to INSTALLED_APPS.

One ``FRESHLINK`` settings dict configures the cache that :func:`get_cache` returns (rebuilt
when the setting changes, e.g. under ``override_settings``). :data:`cache` offers the decorators
at import time. :func:`invalidate_on` ties a model's saves and deletes to tags, invalidated only
after the transaction commits; :func:`invalidate_queryset`, :func:`invalidate_objects` and
:func:`invalidate_on_commit` cover writes that send no signals (``update()``, bulk operations).
:func:`cached_view` caches a view's response and ``{% load freshlink %}{% freshlink_cache %}`` a
template fragment, keyed and tagged like functions.
"""

from __future__ import annotations

from ...errors import MissingDependencyError

try:
    import django  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise MissingDependencyError(
        "freshlink.contrib.django needs Django: pip install 'freshlink[django]'"
    ) from exc

from .caching import cached_view
from .conf import cache, get_cache, stale_reporter
from .receivers import invalidate_objects, invalidate_on, invalidate_on_commit, invalidate_queryset

__all__ = [
    "cache",
    "cached_view",
    "get_cache",
    "invalidate_objects",
    "invalidate_on",
    "invalidate_on_commit",
    "invalidate_queryset",
    "stale_reporter",
]
