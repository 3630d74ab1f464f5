"""System checks for ``settings.FRESHLINK`` (``manage.py check`` runs them at start-up).

* ``freshlink.E001``: the URL's scheme is not one freshlink knows.
* ``freshlink.E002``: an option has a bad value, or an unknown name (a typo).
* ``freshlink.E003``: an option needs a package that is not installed.
* ``freshlink.W001``: ``memory://`` with ``DEBUG = False``: entries and invalidations are not
  shared between processes, so one worker's writes never reach the others' caches.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning

from ...keyspace import MEMORY_SCHEMES, schemes_phrase
from ..settings import settings_problems
from .conf import DJANGO_KEYS, label, raw_settings

__all__ = ["check_settings"]

_HINTS = {
    "url": (
        f"Use a {schemes_phrase()} URL: 'memory://' for one process, or a Redis all processes "
        "share, such as 'redis://localhost:6379/0'."
    ),
    "value": "See the option table in freshlink's Django guide.",
    "unknown": "Check the spelling; option names are upper case, e.g. FRESHLINK['DEFAULT_TTL'].",
}
_IDS = {"url": "freshlink.E001", "value": "freshlink.E002", "unknown": "freshlink.E002"}


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Check ``settings.FRESHLINK``; return Django check messages."""
    raw = raw_settings()
    messages: list[Any] = []
    for problem in settings_problems(raw, label, DJANGO_KEYS):
        if problem.kind == "dependency":
            extra = "prometheus" if problem.key == "metrics" else "redis"
            messages.append(
                Error(
                    problem.message,
                    hint=f"pip install 'freshlink[{extra}]'",
                    id="freshlink.E003",
                )
            )
        else:
            messages.append(
                Error(problem.message, hint=_HINTS[problem.kind], id=_IDS[problem.kind])
            )
    if messages:
        return messages
    outbox = {str(k).lower(): v for k, v in raw.items()}.get("outbox", False)
    if not isinstance(outbox, bool):
        return [
            Error(
                f"{label('outbox')} must be True or False, got {outbox!r}",
                hint=_HINTS["value"],
                id="freshlink.E002",
            )
        ]
    url = str({str(k).lower(): v for k, v in raw.items()}.get("url", "memory://"))
    if urlsplit(url).scheme.lower() in MEMORY_SCHEMES and not settings.DEBUG:
        messages.append(
            Warning(
                "FRESHLINK uses memory:// with DEBUG = False: each process has its own cache, "
                "so a write in one worker never invalidates the entries of the others.",
                hint="Set FRESHLINK['URL'] to a Redis URL all workers share, or silence "
                "freshlink.W001 if this site really runs in a single process.",
                id="freshlink.W001",
            )
        )
    return messages
