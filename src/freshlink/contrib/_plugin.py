"""The one plugin core: what the Flask and Django plugins do, with no framework in sight.

Each framework only adapts it: it builds a :class:`PluginState` (a Flask app's, or the one
``settings.FRESHLINK`` configures), wraps a :class:`Reply` in its own response type, and turns
the lines of :func:`run_command` (or its :class:`CommandFailed`) into its CLI's output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..cache import Cache
from ..errors import FreshlinkError
from ..inspection import NoEntryError, describe_cache, entry_lines, inspect_entry
from ._payload import metrics_payload
from ._proxy import Bindings
from .ratelimit import RateLimiter
from .reports import StaleReports
from .settings import Settings

__all__ = [
    "HELP",
    "CommandFailed",
    "PluginState",
    "Reply",
    "metrics",
    "report_stale",
    "run_command",
]


class PluginState(Bindings):
    """One Cache of a plugin with its parsed settings, stale reporters, reports and rate limiter."""

    def __init__(
        self, cache: Cache, settings: Settings, reporters: Mapping[str, Callable[..., object]]
    ) -> None:
        super().__init__(cache)
        self.settings = settings
        #: The plugin's registry (it outlives the state: reporters are registered at import).
        self.reporters = reporters
        self.reports = StaleReports(cache.name, settings.metrics)
        self.limiter = RateLimiter(settings.report_stale_rate, settings.report_stale_burst)
        #: The exporter of the cache's metrics to ``settings.metrics`` (None: metrics are off).
        self.exporter: Any = None
        if settings.metrics is not None:
            # Imported here: prometheus_client is only needed when METRICS is set.
            from ..metrics import PrometheusMetrics

            try:
                self.exporter = PrometheusMetrics(cache, settings.metrics)
            except Exception:
                cache.close()  # e.g. another cache of that name reports there: no leaked threads
                raise

    def close(self) -> None:
        """Detach the metrics, then close the Cache (connections and threads)."""
        if self.exporter is not None:
            self.exporter.close()
        self.cache.close()


# ---------------------------------------------------------------------------- endpoints


@dataclass(frozen=True, slots=True)
class Reply:
    """An endpoint's answer: a status, a JSON body (None: an empty body) and headers."""

    status: int
    body: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def metrics(state: PluginState) -> tuple[bytes, str] | None:
    """The metrics endpoint's body and content type, or None when no registry is configured."""
    registry = state.settings.metrics
    return None if registry is None else metrics_payload(registry)


def report_stale(
    state: PluginState,
    client: str,
    data: Mapping[str, Any],
    is_safe: Callable[[str], bool],
    *reporter_args: Any,
) -> Reply:
    """Refresh the entry a user says looks stale: rate-limited per ``client``.

    ``data`` is the posted form or JSON (``name``, optional ``next``); ``is_safe`` says whether
    ``next`` may be redirected to; the reporter is called with ``reporter_args``.
    """
    wait = state.limiter.take(client)
    if wait > 0:
        return Reply(
            429,
            {"error": "too many stale reports, try again later"},
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )
    name = data.get("name")
    reporter = state.reporters.get(name) if isinstance(name, str) else None
    if reporter is None or not isinstance(name, str):
        return Reply(404, {"error": f"no stale reporter named {name!r}"})
    reporter(*reporter_args)
    state.reports.count(name)
    target = data.get("next")
    if isinstance(target, str) and is_safe(target):
        return Reply(303, None, {"Location": target})  # see other: the browser GETs the page
    return Reply(200, {"refreshed": name})


# ---------------------------------------------------------------------------- commands


class CommandFailed(Exception):
    """A plugin command's one-line error; each framework raises it as its own CLI error."""


#: Help of each command, shared by ``flask freshlink`` and ``manage.py freshlink``.
HELP = {
    "stats": "Show the cache's URL, namespace, read mode, L1 size and breaker state.",
    "invalidate": "Invalidate every entry stamped with any of TAGS, in every process.",
    "inspect": "Show the stored entry of KEY with its stamped and current generations.",
}


def _stats(state: PluginState) -> list[str]:
    rows = describe_cache(state.cache)
    rows.append(("stale reports", str(state.reports.total())))
    width = max(len(k) for k, _ in rows)
    return [f"{key:<{width}}  {value}" for key, value in rows]


def _invalidate(state: PluginState, tags: Sequence[str]) -> list[str]:
    state.cache.invalidate(*tags)
    return [f"invalidated {len(tags)} tag(s): {' '.join(tags)}"]


def _inspect(state: PluginState, key: str) -> list[str]:
    return entry_lines(inspect_entry(state.cache, key))


_COMMANDS: dict[str, Callable[..., list[str]]] = {
    "stats": _stats,
    "invalidate": _invalidate,
    "inspect": _inspect,
}


def run_command(state: PluginState, name: str, *args: Any) -> list[str]:
    """The output lines of command ``name`` (``stats``, ``invalidate TAGS``, ``inspect KEY``)."""
    try:
        return _COMMANDS[name](state, *args)
    except (FreshlinkError, NoEntryError) as exc:
        raise CommandFailed(str(exc)) from exc
