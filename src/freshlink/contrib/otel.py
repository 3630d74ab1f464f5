"""OpenTelemetry: spans and metrics of a cache (extra ``[otel]``: the OpenTelemetry API only).

``OTelInstrumentation(cache)`` (or :func:`instrument`) opens a span around each call of a
cached function that reaches the read path ("freshlink.get"), its loader ("freshlink.load"),
each invalidation ("freshlink.invalidate") and each refresh ("freshlink.refresh"), through the
cache's tracing hook (:mod:`freshlink.tracing`): the span is current while the work runs, so
it nests under the application's current span, and the loader's and the Redis client's spans
nest under it. An L1 hit served by the hot path is reported by the ``hit`` event: it becomes a
span of its own, of (near) zero duration.

Attributes: ``freshlink.cache`` (the cache's name), ``freshlink.function``, ``freshlink.tier``
(``l1``, ``l2``, ``load``) and ``freshlink.outcome`` (``hit``, ``miss``, ``stale``, ``error``,
``refreshed``, ``skipped``, ``invalidated``), ``error.type`` on failures. Never a key, a tag
or an argument value, and never an exception's message (either may carry them).

The metrics are those of :class:`freshlink.metrics.PrometheusMetrics`, through the
OpenTelemetry metrics API (see :mod:`._otel_metrics`): counters read from the counts the cache
keeps anyway, at collection time, and load durations recorded by the ``load`` event. Nothing
of this costs anything until a cache is instrumented, metrics alone add nothing to a hit, and
:meth:`OTelInstrumentation.uninstrument` removes every hook again.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import ConfigurationError, MissingDependencyError
from ..events import Event
from ..stats import FunctionStats
from ._otel_metrics import SCOPE, Baseline, Instruments, instruments

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise MissingDependencyError(
        "freshlink.contrib.otel needs the OpenTelemetry API: pip install 'freshlink[otel]'"
    ) from exc

if TYPE_CHECKING:
    from ..cache import Cache

__all__ = ["SPAN_NAMES", "OTelInstrumentation", "instrument", "uninstrument"]

#: The span name of each traced operation.
SPAN_NAMES = {
    "get": "freshlink.get",
    "load": "freshlink.load",
    "invalidate": "freshlink.invalidate",
    "refresh": "freshlink.refresh",
}
CACHE, FUNCTION, TIER, OUTCOME = (
    "freshlink.cache",
    "freshlink.function",
    "freshlink.tier",
    "freshlink.outcome",
)
_SCOPE = "freshlink"

# The freshlink span open in this thread or task: events annotate it with what happened.
_open: ContextVar[_Span | None] = ContextVar("freshlink_otel_span", default=None)


class _Span:
    """One traced operation: a span current from ``__enter__`` to ``__exit__``."""

    __slots__ = (
        "ctx_token",
        "function",
        "op",
        "outcome",
        "outer",
        "owner",
        "parent",
        "span",
        "tier",
    )

    def __init__(
        self, owner: OTelInstrumentation, op: str, function: str | None, parent: Any = None
    ) -> None:
        self.owner = owner
        self.op = op
        self.function = function
        self.parent = parent  # a captured context (background refresh), or None: current
        self.tier: str | None = "load" if op == "load" else None
        self.outcome: str | None = None
        self.span: Any = None
        self.ctx_token: Any = None
        self.outer: _Span | None = None  # the freshlink span this one opened inside

    def __enter__(self) -> _Span:
        attributes = {CACHE: self.owner.label}
        if self.function is not None:
            attributes[FUNCTION] = self.function
        self.span = self.owner.tracer.start_span(
            SPAN_NAMES[self.op], self.parent, SpanKind.INTERNAL, attributes
        )
        self.outer = _open.get() if self.parent is None else None
        self.ctx_token = (
            otel_context.attach(trace.set_span_in_context(self.span, self.parent)),
            _open.set(self),
        )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        ctx_token, own_token = self.ctx_token
        _reset(own_token)
        otel_context.detach(ctx_token)
        span = self.span
        if exc is not None:
            self.outcome = "error"
            # The type only: an exception's message may quote keys or argument values.
            span.set_attribute("error.type", _qualname(type(exc)))
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        elif self.op == "refresh" and self.outcome is None:
            self.outcome = "skipped"  # another process refreshes it, or an invalidation won
        if self.tier is not None:
            span.set_attribute(TIER, self.tier)
        if self.outcome is not None:
            span.set_attribute(OUTCOME, self.outcome)
        span.end()


def _reset(token: Token[_Span | None]) -> None:
    # ValueError: closed in another context (a generator collected elsewhere).
    with contextlib.suppress(ValueError):
        _open.reset(token)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# Caches instrumented now (uninstrument(cache) finds its instrumentation here).
_active: weakref.WeakKeyDictionary[Cache, OTelInstrumentation] = weakref.WeakKeyDictionary()


class OTelInstrumentation:
    """Spans and metrics of one cache through OpenTelemetry (see the module docstring).

    ``tracer_provider`` / ``meter_provider``: None means the global ones. ``spans=False`` or
    ``metrics=False`` turns either half off; ``l1_spans=False`` records no span for an L1
    hit served from process memory (they are still counted). :meth:`uninstrument` (or
    leaving a ``with`` block) undoes it.
    """

    def __init__(
        self,
        cache: Cache,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        spans: bool = True,
        metrics: bool = True,
        l1_spans: bool = True,
    ) -> None:
        if cache in _active:
            raise ConfigurationError(f"{cache!r} is already instrumented with OpenTelemetry")
        if spans and cache.tracer is not None:
            raise ConfigurationError(f"{cache!r} already has a tracer: {cache.tracer!r}")
        self.cache = cache
        self.label = cache.name
        self.spans = spans
        self.l1_spans = l1_spans
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
        self._set: Instruments | None = None
        self._baseline: Baseline | None = None
        self._hooks: list[tuple[str, Callable[[Event], None]]] = []
        self._durations: dict[str | None, dict[str, str]] = {}
        if metrics:
            self._set = instruments(meter_provider or otel_metrics.get_meter_provider())
            self._set.attach(self)
            self._baseline = Baseline(cache)
        if metrics or spans:
            self._hooks.append(("load", self._on_load))
        if spans:
            # Not needed for the metrics: hits are read from the cache's own counts, so
            # with spans off an L1 hit costs what it did.
            self._hooks += [
                ("hit", self._on_hit),
                ("miss", self._on_miss),
                ("stale_served", self._on_stale),
                ("refresh", self._on_refresh),
                ("error", self._on_error),
                ("invalidation", self._on_invalidation),
            ]
        for name, hook in self._hooks:
            cache.events.on(name, hook)
        if spans:
            cache.tracer = self
        _active[cache] = self
        self.closed = False

    # ------------------------------------------------------------------ the tracing hook

    def span(self, op: str, function: str | None) -> _Span:
        """A span for ``op`` of ``function``, current inside (freshlink.tracing.Tracer)."""
        return _Span(self, op, function)

    def later(self, op: str, function: str | None) -> Callable[[], _Span]:
        """A span factory whose spans are children of the context current now."""
        parent = otel_context.get_current()
        return lambda: _Span(self, op, function, parent)

    # ------------------------------------------------------------------ events

    def _annotating(self, e: Event) -> _Span | None:
        """The open span ``e`` is about (an open span of the same function of this cache)."""
        sp = _open.get()
        if sp is not None and sp.owner is self and sp.function == e.function:
            return sp
        return None

    def counts(self) -> tuple[dict[str, FunctionStats], int, int]:
        """Counts since instrumented: per function, invalidations, errors of no function."""
        if self._baseline is None:
            return {}, 0, 0
        return self._baseline.counts()

    def _on_load(self, e: Event) -> None:
        if self.spans:
            sp = self._annotating(e)
            outer = sp.outer if sp is not None and sp.op == "get" else None
            if (
                outer is not None
                and outer.owner is self
                and outer.op == "refresh"
                and outer.function == e.function
            ):
                # The .refresh() handle reads through a "get" span of its own: its load is
                # the refresh (a miss served by another process's load stays "skipped").
                outer.outcome = "refreshed"
        if e.duration is None or self._set is None:
            return
        attrs = self._durations.get(e.function)
        if attrs is None:
            attrs = self._durations[e.function] = {CACHE: self.label, FUNCTION: e.function or ""}
        self._set.load_duration.record(e.duration, attrs)

    def _on_hit(self, e: Event) -> None:
        sp = self._annotating(e) if e.key is not None else None
        if sp is not None:
            sp.tier, sp.outcome = e.tier or "l2", "hit"
        elif e.key is None and e.function is not None and self.l1_spans:
            # The inlined L1 hit (it reports no key): no span was open around it.
            attrs = {CACHE: self.label, FUNCTION: e.function, TIER: "l1", OUTCOME: "hit"}
            self.tracer.start_span(SPAN_NAMES["get"], attributes=attrs).end()

    def _on_miss(self, e: Event) -> None:
        sp = self._annotating(e)
        if sp is not None:
            sp.tier, sp.outcome = "load", "miss"

    def _on_stale(self, e: Event) -> None:
        sp = self._annotating(e)
        if sp is not None:
            sp.outcome = "stale"
            if e.tier is not None:
                sp.tier = e.tier

    def _on_refresh(self, e: Event) -> None:
        sp = self._annotating(e)
        if sp is not None and sp.op == "refresh":
            sp.outcome = "refreshed"

    def _on_error(self, e: Event) -> None:
        sp = _open.get()
        if sp is not None and sp.owner is self and e.error is not None:
            # A failure the caller was shielded from (Redis down: served by the loader) or
            # that is about to propagate: recorded as an event, by type only.
            sp.span.add_event("freshlink.error", {"error.type": _qualname(type(e.error))})

    def _on_invalidation(self, e: Event) -> None:
        sp = _open.get()
        if sp is not None and sp.owner is self and sp.op == "invalidate":
            sp.outcome = "invalidated"

    # ------------------------------------------------------------------ lifecycle

    def uninstrument(self) -> None:
        """Remove every hook: the cache costs exactly what it did before (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for name, hook in self._hooks:
            self.cache.events.off(name, hook)
        if self.cache.tracer is self:
            self.cache.tracer = None
        if self._set is not None:
            self._set.detach(self)
        if _active.get(self.cache) is self:
            del _active[self.cache]

    def __enter__(self) -> OTelInstrumentation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstrument()

    def __repr__(self) -> str:
        return f"OTelInstrumentation({self.cache!r})"


def instrument(
    cache: Cache,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    **options: bool,
) -> OTelInstrumentation:
    """Instrument ``cache`` (see :class:`OTelInstrumentation`); returns the instrumentation."""
    return OTelInstrumentation(cache, tracer_provider, meter_provider, **options)


def uninstrument(cache: Cache) -> None:
    """Undo :func:`instrument` on ``cache`` (no error if it is not instrumented)."""
    found = _active.get(cache)
    if found is not None:
        found.uninstrument()
