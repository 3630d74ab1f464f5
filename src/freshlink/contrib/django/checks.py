"""System checks for ``settings.FRESHLINK`` (``manage.py check`` runs them at start-up).

* ``freshlink.E001``: the URL's scheme is not one freshlink knows.
* ``freshlink.E002``: an option has a bad value, or an unknown name (a typo).
* ``freshlink.E003``: an option needs a package that is not installed.
* ``freshlink.W001``: ``memory://`` with ``DEBUG = False``: entries and invalidations are not
  shared between processes, so one worker's writes never reach the others' caches.
* ``freshlink.W002`` (``manage.py check --deploy`` only): the configured Redis does not answer
  a PING within :data:`PING_TIMEOUT` seconds. A warning, not an error: the site still serves
  (every read goes to its loader while the breaker is open), only without a cache.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning

from ...inspection import describe_cache
from ...keyspace import MEMORY_SCHEMES, schemes_phrase
from ..settings import is_client, settings_problems
from .conf import DJANGO_KEYS, get_cache, label, raw_settings

__all__ = ["PING_TIMEOUT", "check_reachable", "check_settings"]

#: Seconds the deploy check waits for the cache's Redis to answer PING.
PING_TIMEOUT = 2.0

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
    url = {str(k).lower(): v for k, v in raw.items()}.get("url", "memory://")
    if is_client(url):
        return messages
    if urlsplit(str(url)).scheme.lower() in MEMORY_SCHEMES and not settings.DEBUG:
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


def check_reachable(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``--deploy``: PING the configured cache's Redis through its own client, with a timeout."""
    raw = raw_settings()
    if settings_problems(raw, label, DJANGO_KEYS):
        return []  # check_settings reports them; there is no cache to reach
    cache = get_cache()
    client = getattr(cache.backend, "client", None)  # None: memory://, nothing to reach
    if client is None:
        return []
    error = _ping(client, PING_TIMEOUT)
    if error is None:
        return []
    url = dict(describe_cache(cache))["url"]  # the password, if any, is masked
    return [
        Warning(
            f"freshlink cannot reach its cache at {url}: {error}. Until it can, every cached "
            "function calls its loader (the database) on every read.",
            hint=f"Start that Redis, or point {label('url')} at one this host can reach "
            "(check host, port, password, TLS and firewalls); `manage.py freshlink stats` "
            "shows what freshlink is configured with.",
            id="freshlink.W002",
        )
    ]


def _ping(client: Any, timeout: float) -> str | None:
    """None if ``client`` answers PING within ``timeout`` seconds, else what went wrong."""
    outcome: list[BaseException | None] = []

    def ping() -> None:
        try:
            client.ping()
        except Exception as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    # In a thread: a client the app built itself may have no socket timeout at all, and a
    # check must never hang `manage.py check --deploy` (and the deploy waiting on it).
    thread = threading.Thread(target=ping, name="freshlink-deploy-ping", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"no answer to PING within {timeout:g} s"
    exc = outcome[0]
    return None if exc is None else f"{type(exc).__name__}: {exc}"
