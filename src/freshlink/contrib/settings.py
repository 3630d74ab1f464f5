"""The ``FRESHLINK`` configuration both plugins read, parsed into :class:`Settings`.

:func:`parse_settings` turns a ``FRESHLINK`` mapping (Flask's ``FRESHLINK_*`` keys or Django's
``FRESHLINK`` dict) into :class:`~freshlink.Cache` options plus the plugins' own, collecting
every problem at once; :func:`settings_problems` lists them for Django's system checks.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from ..backends import client_kind
from ..cache import Cache
from ..errors import ConfigurationError
from ..keyspace import MEMORY_SCHEMES, SCHEMES, schemes_phrase
from ..local import Local

__all__ = [
    "KNOWN_KEYS",
    "URL_SCHEMES",
    "Problem",
    "Settings",
    "build_cache",
    "is_client",
    "parse_settings",
    "resolve_registry",
    "settings_problems",
]

#: The URL schemes a plugin's ``URL`` option accepts (every scheme a Cache opens).
URL_SCHEMES = SCHEMES

# Option name (lower case) -> how its value is read. Numbers may be given as strings so that
# values taken from environment variables work unchanged.
_FLOATS = frozenset({"jitter", "beta", "stale_while_revalidate", "stale_if_error", "lease_ttl"})
_OPTIONAL_FLOATS = frozenset({"default_ttl", "ahead", "none_ttl", "expiring_within"})
_STRS = frozenset({"namespace", "name", "serializer"})
_LOCAL_KEYS = frozenset({"local_maxsize", "local_ttl", "max_staleness"})
_PLUGIN_KEYS = frozenset(
    {
        "metrics",
        "metrics_url",
        "report_stale",
        "report_stale_url",
        "report_stale_rate",
        "report_stale_burst",
    }
)
#: Every option key either plugin accepts (lower case).
KNOWN_KEYS = frozenset(
    {"url", "local", "secret", "max_value_size", "cache_none"}
    | _FLOATS
    | _OPTIONAL_FLOATS
    | _STRS
    | _LOCAL_KEYS
    | _PLUGIN_KEYS
)
_NONE_WORDS = frozenset({"", "none", "null", "off", "false", "no"})
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a ``FRESHLINK`` configuration (``kind`` picks the check id)."""

    key: str
    message: str
    kind: Literal["url", "value", "unknown", "dependency"] = "value"


@dataclass(slots=True)
class Settings:
    """A parsed ``FRESHLINK`` configuration: the Cache's options plus the plugins' own."""

    #: A URL, or a ready redis-py client (``redis.Redis``, ``RedisCluster``, their asyncio kinds).
    url: Any = "memory://"
    cache_options: dict[str, Any] = field(default_factory=dict)
    metrics: Any = None
    metrics_url: str = "/freshlink/metrics"
    report_stale: bool = False
    report_stale_url: str = "/freshlink/report-stale"
    report_stale_rate: float = 0.2
    report_stale_burst: int = 5


class _Reader:
    """Reads option values, recording a :class:`Problem` instead of raising on a bad one."""

    def __init__(self, raw: Mapping[str, Any], label: Callable[[str], str]) -> None:
        self.raw = raw
        self.label = label
        self.problems: list[Problem] = []

    def bad(self, key: str, expected: str, kind: Literal["url", "value"] = "value") -> None:
        self.problems.append(
            Problem(key, f"{self.label(key)} must be {expected}, got {self.raw[key]!r}", kind)
        )

    def float_(self, key: str, *, optional: bool) -> float | None:
        value = self.raw[key]
        if optional and (
            value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)
        ):
            return None
        if isinstance(value, bool):
            self.bad(key, "a number of seconds")
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.bad(key, "a number of seconds" + (" or None" if optional else ""))
            return None
        if math.isnan(number) or number < 0:
            self.bad(key, "a number of seconds >= 0")
            return None
        return number

    def int_(self, key: str, *, optional: bool = False, minimum: int = 1) -> int | None:
        value = self.raw[key]
        if optional and (
            value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)
        ):
            return None
        if isinstance(value, bool):
            self.bad(key, f"an int >= {minimum}")
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.bad(key, f"an int >= {minimum}")
            return None
        if number < minimum or (isinstance(value, float) and value != number):
            self.bad(key, f"an int >= {minimum}")
            return None
        return number

    def bool_(self, key: str) -> bool | None:
        value = self.raw[key]
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
            return value.strip().lower() in _TRUE_WORDS
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        self.bad(key, "a bool")
        return None

    def str_(self, key: str, *, path: bool = False) -> str | None:
        value = self.raw[key]
        if not isinstance(value, str) or not value:
            self.bad(key, "a non-empty str")
            return None
        if path and not value.startswith("/"):
            self.bad(key, "a URL path starting with '/'")
            return None
        return value


def parse_settings(
    raw: Mapping[str, Any],
    label: Callable[[str], str] = str.upper,
    known: frozenset[str] = KNOWN_KEYS,
) -> Settings:
    """Parse a ``FRESHLINK`` mapping (keys in any case); raise ConfigurationError listing problems.

    ``label`` turns a lower-case key into the name the user wrote (``FRESHLINK_URL`` in Flask,
    ``FRESHLINK['URL']`` in Django) so messages point at the right line of their config.
    """
    settings, problems = _parse(raw, label, known)
    if problems:
        raise ConfigurationError("; ".join(p.message for p in problems))
    return settings


def settings_problems(
    raw: Any, label: Callable[[str], str] = str.upper, known: frozenset[str] = KNOWN_KEYS
) -> list[Problem]:
    """Every problem of a ``FRESHLINK`` mapping, including those only a Cache would notice."""
    if not isinstance(raw, Mapping):
        return [Problem("", f"FRESHLINK must be a dict, got {type(raw).__name__}")]
    settings, problems = _parse(raw, label, known)
    if problems:
        return problems
    if not is_client(settings.url) and urlsplit(settings.url).scheme.lower() not in MEMORY_SCHEMES:
        try:
            importlib.import_module("redis")
        except ImportError:
            problems.append(
                Problem(
                    "url",
                    f"{label('url')} is a Redis URL but redis-py is not installed",
                    "dependency",
                )
            )
    if settings.metrics is not None:
        try:
            importlib.import_module("prometheus_client")
        except ImportError:
            problems.append(
                Problem(
                    "metrics",
                    f"{label('metrics')} needs prometheus_client, which is not installed",
                    "dependency",
                )
            )
    # The remaining checks (namespace characters, serializer names, secrets, TTL ranges) are
    # the Cache's own: build an in-process one with the same options and report its verdict,
    # so the plugin never disagrees with the library about what is valid.
    try:
        Cache("memory://", **settings.cache_options).close()
    except ConfigurationError as exc:
        problems.append(Problem("", str(exc)))
    return problems


def _parse(
    raw: Mapping[str, Any], label: Callable[[str], str], known: frozenset[str]
) -> tuple[Settings, list[Problem]]:
    lowered = {str(k).lower(): v for k, v in raw.items()}
    r = _Reader(lowered, label)
    s = Settings()
    opts = s.cache_options
    if "url" in lowered:
        url = lowered["url"]
        if is_client(url):
            s.url = url  # a ready redis-py client: the app built it (TLS, auth, pools) itself
        elif not isinstance(url, str):
            r.bad("url", "a str such as 'redis://localhost:6379/0' or a redis-py client", "url")
        elif urlsplit(url).scheme.lower() not in SCHEMES:
            r.bad("url", f"a {schemes_phrase()} URL", "url")
        else:
            s.url = url
    for key in sorted(_FLOATS & lowered.keys()):
        if (number := r.float_(key, optional=False)) is not None:
            opts[key] = number
    for key in sorted(_OPTIONAL_FLOATS & lowered.keys()):
        before = len(r.problems)
        number = r.float_(key, optional=True)
        if len(r.problems) == before:
            opts[key] = number
    for key in sorted(_STRS & lowered.keys()):
        if (text := r.str_(key)) is not None:
            opts[key] = text
    if "cache_none" in lowered and (flag := r.bool_("cache_none")) is not None:
        opts["cache_none"] = flag
    if "max_value_size" in lowered:
        before = len(r.problems)
        size = r.int_("max_value_size", optional=True)
        if len(r.problems) == before:
            opts["max_value_size"] = size
    if "secret" in lowered:
        secret = lowered["secret"]
        if secret is not None and not isinstance(secret, str | bytes | list | tuple):
            r.bad("secret", "a str, bytes or a list of them (newest first)")
        elif secret:  # an empty secret from an unset environment variable means "unsigned"
            opts["secret"] = secret
    _parse_local(lowered, r, opts)
    _parse_plugin(lowered, r, s)
    for key in sorted(set(lowered) - known):
        r.problems.append(
            Problem(
                key,
                f"unknown option {label(key)}; known options: "
                + ", ".join(label(k) for k in sorted(known)),
                "unknown",
            )
        )
    return s, r.problems


def _parse_local(lowered: Mapping[str, Any], r: _Reader, opts: dict[str, Any]) -> None:
    if "local" not in lowered:
        extra = sorted(_LOCAL_KEYS & lowered.keys())
        if extra:
            r.problems.append(
                Problem(
                    extra[0],
                    f"{r.label(extra[0])} needs {r.label('local')} = 'bounded' or 'strict'",
                )
            )
        return
    local = lowered["local"]
    if isinstance(local, Local):
        opts["local"] = local
        return
    if local is None or local is False:
        opts["local"] = None
        return
    mode = local.strip().lower() if isinstance(local, str) else None
    if mode in _NONE_WORDS:
        opts["local"] = None
        return
    if mode not in ("bounded", "strict"):
        r.bad("local", "'bounded', 'strict', None or a freshlink.Local")
        return
    kwargs: dict[str, Any] = {"mode": mode}
    if "local_maxsize" in lowered and (size := r.int_("local_maxsize")) is not None:
        kwargs["maxsize"] = size
    if "local_ttl" in lowered and (ttl := r.float_("local_ttl", optional=True)) is not None:
        kwargs["ttl"] = ttl
    if (
        "max_staleness" in lowered
        and (bound := r.float_("max_staleness", optional=False)) is not None
    ):
        kwargs["max_staleness"] = bound
    try:
        opts["local"] = Local(**kwargs)
    except ConfigurationError as exc:
        r.problems.append(Problem("local", str(exc)))


def _parse_plugin(lowered: Mapping[str, Any], r: _Reader, s: Settings) -> None:
    metrics = lowered.get("metrics")
    if isinstance(metrics, str) and metrics.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        # From an environment variable: FRESHLINK_METRICS=1 / =off
        metrics = metrics.strip().lower() in _TRUE_WORDS
    if metrics is True:
        s.metrics = _default_registry()
    elif metrics not in (None, False, ""):
        try:
            s.metrics = resolve_registry(metrics)
        except ConfigurationError as exc:
            r.problems.append(Problem("metrics", f"{r.label('metrics')}: {exc}"))
    for key in ("metrics_url", "report_stale_url"):
        if key in lowered and (path := r.str_(key, path=True)) is not None:
            setattr(s, key, path)
    if "report_stale" in lowered and (flag := r.bool_("report_stale")) is not None:
        s.report_stale = flag
    if "report_stale_rate" in lowered:
        rate = r.float_("report_stale_rate", optional=False)
        if rate == 0:
            r.bad("report_stale_rate", "a number of reports per second > 0")
        elif rate is not None:
            s.report_stale_rate = rate
    if "report_stale_burst" in lowered and (burst := r.int_("report_stale_burst")) is not None:
        s.report_stale_burst = burst


def is_client(value: Any) -> bool:
    """``value`` is a redis-py client a Cache can wrap (``Cache(client)``)."""
    return client_kind(value) is not None


def _default_registry() -> Any:
    """``prometheus_client.REGISTRY``; True when prometheus_client is missing (a later check
    names the extra to install, as for any other ``METRICS`` value)."""
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return True
    return REGISTRY


def resolve_registry(value: Any) -> Any:
    """A prometheus registry given as an object or as a dotted path ``"pkg.module.NAME"``."""
    if isinstance(value, str):
        module, _, attr = value.replace(":", ".").rpartition(".")
        try:
            value = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigurationError(f"cannot import the registry {value!r}: {exc}") from None
    if not callable(getattr(value, "collect", None)):
        raise ConfigurationError(
            f"expected a prometheus_client CollectorRegistry (or its dotted path), got {value!r}"
        )
    return value


def build_cache(settings: Settings) -> Cache:
    """The Cache a parsed configuration describes (does not connect yet)."""
    return Cache(settings.url, **settings.cache_options)
