"""What the Flask and Django plugins share; nothing here imports a framework.

* :func:`parse_settings` turns a ``FRESHLINK`` mapping (Flask's ``FRESHLINK_*`` keys or Django's
  ``FRESHLINK`` dict) into :class:`Cache` options, collecting every problem at once.
* :class:`CacheProxy` gives decorators that can be applied at import time, before any app or
  settings exist: each call resolves the current :class:`Cache` (the Flask app's, or the one
  built from Django settings) and the wrapper bound to it.
* :class:`RateLimiter`, :class:`StaleReports`, :func:`describe_cache`, :func:`describe_entry`
  and :func:`metrics_payload` back the "report stale" endpoint, the metrics endpoint and the
  ``stats`` / ``inspect`` commands of both plugins.
"""

from __future__ import annotations

import functools
import importlib
import math
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload
from urllib.parse import urlsplit

from ..backends.base import Entry
from ..cache import Cache
from ..errors import ConfigurationError, FreshlinkError, MissingDependencyError
from ..keys import safe_key
from ..local import Local

if TYPE_CHECKING:
    from ..handles import AsyncCached, Cached, CachedDecorator

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

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

URL_SCHEMES = (
    "memory",
    "redis",
    "rediss",
    "unix",
    "redis+cluster",
    "rediss+cluster",
    "redis+sentinel",
    "rediss+sentinel",
)

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

    url: str = "memory://"
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
    if urlsplit(settings.url).scheme.lower() != "memory":
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
        if not isinstance(url, str):
            r.bad("url", "a str such as 'redis://localhost:6379/0'", "url")
        elif urlsplit(url).scheme.lower() not in URL_SCHEMES:
            r.bad(
                "url",
                "a memory://, redis://, rediss://, unix://, redis+cluster:// or "
                "redis+sentinel:// URL",
                "url",
            )
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
    if lowered.get("metrics") not in (None, False, ""):
        try:
            s.metrics = resolve_registry(lowered["metrics"])
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


# ---------------------------------------------------------------------------- lazy decorators


class Bindings:
    """A Cache plus the wrappers that functions decorated through a :class:`CacheProxy` bound to it.

    The wrappers live here, with the Cache, rather than on the module-level decorated
    function, so that they are dropped together with the app (or settings) that owns the Cache.
    """

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self._bound: dict[object, Any] = {}
        self._lock = threading.Lock()

    def bind(self, lazy: object, build: Callable[[Bindings], T]) -> T:
        """The wrapper of ``lazy`` for this Cache, built on first use."""
        try:
            return self._bound[lazy]  # type: ignore[no-any-return]
        except KeyError:
            pass
        # Built outside the lock: building may bind other functions (an @updates reader).
        made = build(self)
        with self._lock:
            return self._bound.setdefault(lazy, made)  # type: ignore[no-any-return]


_validator_cache: Cache | None = None
_DEFAULT: Any = object()  # "ttl not given": None is a valid TTL (no expiry)


def _validator() -> Cache:
    # An unused in-process Cache that decorators are applied to once at import time, so a bad
    # template or option fails there (like a plain @cache.cached) and not on the first request.
    global _validator_cache
    if _validator_cache is None:
        _validator_cache = Cache("memory://", namespace="freshlink-validate", local=None)
    return _validator_cache


class _Lazy:
    """A function decorated through a proxy: each call runs the current Cache's wrapper."""

    def __init__(
        self, proxy: CacheProxy, func: Any, build: Callable[[Bindings], Any], checked: Any
    ) -> None:
        self._proxy = proxy
        self._build = build
        self._checked = checked  # the validator Cache's wrapper: key/tags need no app
        functools.update_wrapper(self, func)

    def _target(self) -> Any:
        return self._proxy.bindings().bind(self, self._build)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapper bound to the current Cache."""
        return self._target()(*args, **kwargs)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return _LazyBound(self, instance, owner)

    def __repr__(self) -> str:
        return f"<freshlink lazy {self._checked!r}>"


class _LazyCached(_Lazy):
    """A cached function decorated through a proxy; the handles act on the current Cache."""

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        """Invalidate the entry of this call, in every process."""
        return self._target().invalidate(*args, **kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Run the original now and store its result as the entry of this call."""
        return self._target().refresh(*args, **kwargs)

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The entry key this call uses (the same for every Cache)."""
        return self._checked.key(*args, **kwargs)  # type: ignore[no-any-return]

    def tags(self, *args: Any, **kwargs: Any) -> tuple[str, ...]:
        """The rendered tags of this call."""
        return self._checked.tags(*args, **kwargs)  # type: ignore[no-any-return]

    @property
    def uncached(self) -> Any:
        """The original function."""
        return self.__wrapped__  # type: ignore[attr-defined]


class _LazyBound:
    """A lazily bound method: binds the current Cache's wrapper to the instance on each use."""

    def __init__(self, lazy: _Lazy, instance: Any, owner: Any) -> None:
        self._lazy = lazy
        self._instance = instance
        self._owner = owner

    def _target(self) -> Any:
        return self._lazy._target().__get__(self._instance, self._owner)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the bound method through the current Cache."""
        return self._target()(*args, **kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        """Invalidate the entry of this call, in every process."""
        return self._target().invalidate(*args, **kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Run the original now and store its result as the entry of this call."""
        return self._target().refresh(*args, **kwargs)

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The entry key this call uses."""
        checked = self._lazy._checked.__get__(self._instance, self._owner)
        return checked.key(*args, **kwargs)  # type: ignore[no-any-return]

    def tags(self, *args: Any, **kwargs: Any) -> tuple[str, ...]:
        """The rendered tags of this call."""
        checked = self._lazy._checked.__get__(self._instance, self._owner)
        return checked.tags(*args, **kwargs)  # type: ignore[no-any-return]

    @property
    def uncached(self) -> Any:
        """The original function, bound."""
        return self._lazy.__wrapped__.__get__(self._instance, self._owner)  # type: ignore[attr-defined]


class CacheProxy:
    """Decorators usable at import time; every call resolves the Cache through ``bindings``.

    ``bindings`` returns the current :class:`Bindings` (the Flask app's, or the one built from
    Django settings). A decorated function's wrapper for that Cache is built on first use and
    kept with it, so the cost per call is one lookup.
    """

    def __init__(self, bindings: Callable[[], Bindings]) -> None:
        self.bindings = bindings

    @property
    def cache(self) -> Cache:
        """The Cache of the current app or settings."""
        return self.bindings().cache

    @overload
    def cached(
        self,
        ttl: float | None = ...,
        *,
        key: str | None = ...,
        tags: Iterable[str] = ...,
        version: str | int | None = ...,
        code_identity: bool = ...,
        should_cache: Callable[[Any], bool] | None = ...,
        **policy: Any,
    ) -> CachedDecorator: ...
    @overload
    def cached(  # type: ignore[overload-overlap]
        self, ttl: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncCached[P, R]: ...
    @overload
    def cached(self, ttl: Callable[P, R]) -> Cached[P, R]: ...
    def cached(self, ttl: Any = _DEFAULT, **options: Any) -> Any:
        """Like :meth:`Cache.cached`; the wrapper is built per Cache when first called."""
        if callable(ttl) and ttl is not _DEFAULT:
            return self._lazy_cached(ttl, (), {})  # bare @proxy.cached
        args = () if ttl is _DEFAULT else (ttl,)

        def decorate(func: Any) -> Any:
            return self._lazy_cached(func, args, options)

        return decorate

    def _lazy_cached(self, func: Any, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        checked = _validator().cached(*args, **options)(func)

        def build(bindings: Bindings) -> Any:
            return bindings.cache.cached(*args, **options)(func)

        return _LazyCached(self, func, build, checked)

    def invalidates(self, *tags: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Like :meth:`Cache.invalidates`: invalidate the current Cache's tags after the write."""

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            checked = _validator().invalidates(*tags)(func)

            def build(bindings: Bindings) -> Any:
                return bindings.cache.invalidates(*tags)(func)

            return _Lazy(self, func, build, checked)

        return decorate

    def updates(self, reader: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Like :meth:`Cache.updates`, for a reader decorated through this proxy."""
        if not isinstance(reader, _LazyCached) or reader._proxy is not self:
            raise ConfigurationError(
                f"updates() needs a function decorated with this proxy's cached(), got {reader!r}"
            )

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            checked = _validator().updates(reader._checked)(func)

            def build(bindings: Bindings) -> Any:
                real_reader = bindings.bind(reader, reader._build)
                return bindings.cache.updates(real_reader)(func)

            return _Lazy(self, func, build, checked)

        return decorate

    def invalidate(self, *tags: str) -> None:
        """Invalidate ``tags`` in the current Cache (see :meth:`Cache.invalidate`)."""
        self.cache.invalidate(*tags)

    async def ainvalidate(self, *tags: str) -> None:
        """Async :meth:`invalidate`."""
        await self.cache.ainvalidate(*tags)


# ---------------------------------------------------------------------------- report stale


class RateLimiter:
    """Per-client token buckets: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        if not rate > 0 or burst < 1:
            raise ConfigurationError("RateLimiter needs rate > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Spend one token of ``client``: 0.0 if allowed, else seconds until the next token."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if len(self._buckets) >= self.max_clients:
                # Bounded memory: forget the least recently seen half. A forgotten client
                # only gets a fresh burst, which the bucket allows anyway.
                for old in list(self._buckets)[: self.max_clients // 2]:
                    del self._buckets[old]
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate


# One Counter per registry: two apps (or a reset of Django settings) reporting into the same
# registry must share it, because registering the same metric name twice raises.
_report_counters: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_counters_lock = threading.Lock()


class StaleReports:
    """Counts "this looks stale" reports per entry name, and in Prometheus if given a registry."""

    def __init__(self, cache_name: str, registry: Any = None) -> None:
        self.cache_name = cache_name
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._counter: Any = None
        if registry is not None:
            with _counters_lock:
                counter = _report_counters.get(registry)
                if counter is None:
                    from prometheus_client import Counter

                    counter = Counter(
                        "freshlink_stale_reports",
                        "Users' reports that a page looked stale (each forced a refresh).",
                        ["cache", "name"],
                        registry=registry,
                    )
                    _report_counters[registry] = counter
            self._counter = counter

    def count(self, name: str) -> None:
        """Record one report for the entry ``name``."""
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1
        if self._counter is not None:
            self._counter.labels(self.cache_name, name).inc()

    def total(self) -> int:
        """All reports so far."""
        return sum(self.counts.values())


def metrics_payload(registry: Any) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``registry`` and its content type."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    except ImportError as exc:
        raise MissingDependencyError(
            "the metrics endpoint needs prometheus_client: pip install 'freshlink[prometheus]'"
        ) from exc
    return generate_latest(registry), CONTENT_TYPE_LATEST


def require_prometheus() -> None:
    """Raise MissingDependencyError now (at start-up) if prometheus_client is missing."""
    try:
        importlib.import_module("prometheus_client")
    except ImportError as exc:
        raise MissingDependencyError(
            "the metrics endpoint needs prometheus_client: pip install 'freshlink[prometheus]'"
        ) from exc


# ---------------------------------------------------------------------------- stats / inspect


def _mode(cache: Cache) -> str:
    local = cache.local
    if local is None:
        return "strict (no L1: every read checked in the backend)"
    if cache.backend.synchronous:
        return "strict with L1 (in-process backend: L1 learns every invalidation at once)"
    if local.mode == "strict":
        return "strict with L1 (L1 hits confirmed in the backend)"
    return f"bounded (L1 may lag an invalidation by at most {local.max_staleness:g} s)"


def describe_cache(cache: Cache) -> list[tuple[str, str]]:
    """What a Cache says about itself: URL, namespace, mode, L1 size, breaker state..."""
    near = cache.near
    local = cache.local
    ttl = cache.freshness.ttl
    rows = [
        ("name", cache.name),
        ("url", _redact(cache.url)),
        ("namespace", cache.namespace),
        ("backend", _backend_name(cache)),
        ("mode", _mode(cache)),
        ("default ttl", "none" if ttl is None else f"{ttl:g} s"),
        ("signed", "yes" if cache.codec.signed else "no"),
    ]
    if near is not None and local is not None:
        trusted = near.trusted_until > cache.monotonic()
        rows.append(("l1 entries", f"{len(near)} / {local.maxsize}"))
        rows.append(("l1 trusted", "yes" if trusted else "no (flushed until the channel is live)"))
    else:
        rows.append(("l1 entries", "no L1"))
    breaker = cache.breaker
    rows.append(("breaker", breaker.state if breaker is not None else "none (in-process)"))
    rows.append(("pending refreshes", str(cache.refresher.pending())))
    rows.append(("dropped refreshes", str(cache.refresher.dropped)))
    return rows


def _backend_name(cache: Cache) -> str:
    # Name the real backend, not the circuit-breaking wrapper around it.
    inner = getattr(cache.backend, "inner", None)
    if inner is not None:
        return f"{type(inner).__name__} (with circuit breaker)"
    return type(cache.backend).__name__


def _redact(url: str) -> str:
    # Never print a password from the URL in a terminal or a log.
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def describe_entry(cache: Cache, key: str, *, preview: int = 200) -> list[str] | None:
    """Lines describing the stored entry of ``key`` (stamped vs current generations), or None."""
    entry = cache.backend.get_entry(cache.keyspace.entry(key))
    if entry is None and safe_key(key) != key:
        key = safe_key(key)
        entry = cache.backend.get_entry(cache.keyspace.entry(key))
    if entry is None:
        return None
    current = cache.backend.current(entry.names)
    now = cache.clock()
    lines = [f"key: {key}", f"backend key: {cache.keyspace.entry(key)}"]
    age = now - entry.created
    lines.append(f"created: {_when(entry.created)} ({age:.1f} s ago)")
    if entry.ttl is None:
        lines.append("ttl: none")
    else:
        left = entry.ttl - age
        state = f"fresh for {left:.1f} s" if left > 0 else f"expired {-left:.1f} s ago"
        lines.append(f"ttl: {entry.ttl:g} s ({state})")
    lines.append(f"load time: {entry.load_time * 1000:.1f} ms")
    lines.append(f"payload: {len(entry.payload)} bytes")
    shown = _preview_value(cache, key, entry)
    if len(shown) > preview:
        shown = shown[: preview - 3] + "..."
    lines.append(f"value: {shown}")
    valid = tuple(entry.stamps) == tuple(current)
    lines.append(f"valid: {'yes' if valid else 'no (a generation moved on)'}")
    lines.append("generations (stamped -> current):")
    width = max(len(n) for n in entry.names)
    for name, stamped, now_gen in zip(entry.names, entry.stamps, current, strict=True):
        mark = "ok" if stamped == now_gen else "INVALIDATED"
        lines.append(f"  {name:<{width}}  {stamped} -> {now_gen}  {mark}")
    return lines


def _preview_value(cache: Cache, key: str, entry: Entry) -> str:
    """The decoded value of an entry for display, verified like a read would verify it."""
    try:
        return repr(cache._engine.entries.decode_entry(key, entry))
    except FreshlinkError as exc:
        return f"<unreadable: {exc}>"
