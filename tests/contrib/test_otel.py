"""OpenTelemetry: spans and metrics read back from the real SDK's in-memory exporter and reader.

Every scenario runs on ``memory://`` and on a real Redis. The arguments used are distinctive
strings and numbers, and no attribute of any span, span event or metric point may contain them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from freshlink import Cache, Local
from freshlink.contrib.otel import OTelInstrumentation, instrument, uninstrument
from freshlink.errors import ConfigurationError
from freshlink.events import EVENT_NAMES

LOAN = 48613  # an argument value that must never show up in telemetry
USER = "borrower-7f3q"
SECRET = f"loan {LOAN} of {USER}"


@dataclass
class Telemetry:
    """An SDK tracer and meter provider whose output the test reads back."""

    spans: InMemorySpanExporter
    tracer_provider: TracerProvider
    reader: InMemoryMetricReader
    meter_provider: MeterProvider

    def finished(self, prefix: str = "freshlink.") -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name.startswith(prefix)]

    def points(self) -> list[tuple[str, dict[str, Any], Any]]:
        """(metric name, attributes, value or histogram count) of every data point."""
        out: list[tuple[str, dict[str, Any], Any]] = []
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for p in metric.data.data_points:
                        value = getattr(p, "value", None)
                        out.append(
                            (metric.name, dict(p.attributes), p.count if value is None else value)
                        )
        return out

    def metric(self, name: str, **attrs: str) -> Any:
        """The value of ``name`` at the point with these attributes (0 if absent)."""
        for n, a, v in self.points():
            if n == name and all(a.get(f"freshlink.{k}") == want for k, want in attrs.items()):
                return v
        return 0


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    yield Telemetry(spans, tp, reader, mp)
    tp.shutdown()
    mp.shutdown()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make(request: pytest.FixtureRequest, caches: list[Cache]) -> Callable[..., Cache]:
    """Caches on ``memory://`` (its default L1) or on a real Redis (no L1: L2 hits)."""
    if request.param == "memory":

        def on_memory(**kw: Any) -> Cache:
            c = Cache(**kw)
            caches.append(c)
            return c

        return on_memory
    factory: Callable[..., Cache] = request.getfixturevalue("make_redis_cache")
    return factory


def no_secrets(t: Telemetry) -> None:
    for span in t.spans.get_finished_spans():
        for value in [
            *span.attributes.values(),
            *(v for e in span.events for v in e.attributes.values()),
        ]:
            assert str(LOAN) not in str(value), (span.name, value)
            assert USER not in str(value), (span.name, value)
    for name, attrs, _ in t.points():
        for value in attrs.values():
            assert str(LOAN) not in str(value), (name, value)
            assert USER not in str(value), (name, value)


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_spans_nest_under_the_app_span_with_tier_and_outcome(
    make: Callable[..., Cache], telemetry: Telemetry
) -> None:
    cache = make(namespace="lending")
    hit_tier = "l1" if cache.near is not None else "l2"

    db = {"link": 1}

    @cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}", "user:{user}"])
    def get_loan(loan_id: int, user: str) -> str:
        return f"{SECRET} v{db['link']}"

    instrument(cache, telemetry.tracer_provider, telemetry.meter_provider)
    app = telemetry.tracer_provider.get_tracer("app")
    with app.start_as_current_span("GET /loans") as root:
        assert get_loan(LOAN, USER) == f"{SECRET} v1"
        assert get_loan(LOAN, USER) == f"{SECRET} v1"
        db["link"] = 2  # traced, the cache is as coherent as ever
        cache.invalidate(f"user:{USER}")
        assert get_loan(LOAN, USER) == f"{SECRET} v2"

    spans = telemetry.finished()
    names = [s.name for s in spans]
    assert names == [
        "freshlink.load",
        "freshlink.get",
        "freshlink.get",
        "freshlink.invalidate",
        "freshlink.load",
        "freshlink.get",
    ]
    load1, miss1, hit, inval, load2, miss2 = spans
    root_id = root.get_span_context().span_id
    for s in (miss1, hit, inval, miss2):
        assert parent_of(s) == root_id, s.name
        assert s.context.trace_id == root.get_span_context().trace_id
    assert parent_of(load1) == miss1.context.span_id
    assert parent_of(load2) == miss2.context.span_id
    fname = get_loan.uncached.__module__ + "." + get_loan.uncached.__qualname__
    assert attrs(miss1) == {
        "freshlink.cache": "lending",
        "freshlink.function": fname,
        "freshlink.tier": "load",
        "freshlink.outcome": "miss",
    }
    assert attrs(hit) == {
        "freshlink.cache": "lending",
        "freshlink.function": fname,
        "freshlink.tier": hit_tier,
        "freshlink.outcome": "hit",
    }
    assert attrs(inval) == {"freshlink.cache": "lending", "freshlink.outcome": "invalidated"}
    assert attrs(load1)["freshlink.tier"] == "load"
    no_secrets(telemetry)

    t = telemetry
    assert t.metric("freshlink.requests", tier="none", result="miss") == 2
    assert t.metric("freshlink.requests", tier=hit_tier, result="hit") == 1
    assert t.metric("freshlink.loads", function=fname) == 2
    assert t.metric("freshlink.load.duration", function=fname) == 2  # histogram count
    assert t.metric("freshlink.invalidations", cache="lending") == 1
    assert t.metric("freshlink.circuit_open", cache="lending") == 0
    assert t.metric("freshlink.l1.entries", cache="lending") == (1 if hit_tier == "l1" else 0)


def test_a_failing_loader_marks_its_spans_with_the_type_only(
    make: Callable[..., Cache], telemetry: Telemetry
) -> None:
    cache = make(namespace="lending")

    @cache.cached(ttl=60, key="loan:{loan_id}")
    def get_loan(loan_id: int) -> str:
        raise LookupError(f"no {SECRET}")

    instrument(cache, telemetry.tracer_provider, telemetry.meter_provider)
    with pytest.raises(LookupError):
        get_loan(LOAN)
    load, get = telemetry.finished()
    for s in (load, get):
        assert s.status.status_code is StatusCode.ERROR
        assert attrs(s)["error.type"] == "builtins.LookupError"
        assert attrs(s)["freshlink.outcome"] == "error"
        assert not any(e.name == "exception" for e in s.events)  # no message, no traceback
    assert [e.name for e in get.events] == ["freshlink.error"]
    assert telemetry.metric("freshlink.errors") == 1
    no_secrets(telemetry)


def test_async_calls_nest_too(make: Callable[..., Cache], telemetry: Telemetry) -> None:
    cache = make(namespace="lending")

    @cache.cached(ttl=60, key="loan:{loan_id}")
    async def get_loan(loan_id: int) -> str:
        await asyncio.sleep(0)
        return SECRET

    instrument(cache, telemetry.tracer_provider, telemetry.meter_provider)
    app = telemetry.tracer_provider.get_tracer("app")

    async def request() -> None:
        with app.start_as_current_span("GET /loans"):
            assert await get_loan(LOAN) == SECRET
            assert await get_loan(LOAN) == SECRET
            await cache.ainvalidate("anything")

    async def both() -> None:
        await asyncio.gather(request(), request())

    asyncio.run(both())
    roots = telemetry.finished("GET")
    assert len(roots) == 2
    by_root = {r.context.span_id: [] for r in roots}  # type: dict[int, list[str]]
    spans = telemetry.finished()
    ids = {s.context.span_id: s for s in spans}
    for s in spans:
        assert s.parent is not None
        parent = s.parent.span_id
        while parent in ids:  # climb to the app span
            parent = ids[parent].parent.span_id  # type: ignore[union-attr]
        by_root[parent].append(s.name)
    # Each request has its own get spans and invalidation; the single load belongs to one.
    for names in by_root.values():
        assert names.count("freshlink.get") == 2
        assert names.count("freshlink.invalidate") == 1
    assert sorted(n.count("freshlink.load") for n in by_root.values()) in ([0, 1], [1, 1])
    no_secrets(telemetry)


def test_refresh_handle_and_background_refresh(
    make: Callable[..., Cache], telemetry: Telemetry
) -> None:
    now = [1000.0]
    cache = make(namespace="lending", clock=lambda: now[0], monotonic=lambda: now[0])
    calls = []

    @cache.cached(ttl=10, key="loan:{loan_id}", stale_while_revalidate=60)
    def get_loan(loan_id: int) -> str:
        calls.append(loan_id)
        return SECRET

    instrument(cache, telemetry.tracer_provider, telemetry.meter_provider)
    app = telemetry.tracer_provider.get_tracer("app")
    get_loan(LOAN)
    telemetry.spans.clear()

    with app.start_as_current_span("renew") as root:
        assert get_loan.refresh(LOAN) == SECRET
    refresh = next(s for s in telemetry.finished() if s.name == "freshlink.refresh")
    assert parent_of(refresh) == root.get_span_context().span_id
    children = [
        s.name
        for s in telemetry.finished()
        if s.parent and s.parent.span_id == refresh.context.span_id
    ]
    assert children == ["freshlink.invalidate", "freshlink.get"]
    # The handle loaded the value itself: a refresh, not one another process did for it.
    assert attrs(refresh)["freshlink.outcome"] == "refreshed"
    telemetry.spans.clear()

    now[0] += 20  # expired, within stale-while-revalidate: served stale, refreshed behind
    with app.start_as_current_span("GET /loans"):
        assert get_loan(LOAN) == SECRET
    deadline = time.monotonic() + 30
    while not any(s.name == "freshlink.refresh" for s in telemetry.finished()):
        assert time.monotonic() < deadline, "no background refresh span"
        time.sleep(0.01)
    spans = telemetry.finished()
    get = next(s for s in spans if s.name == "freshlink.get")
    bg = next(s for s in spans if s.name == "freshlink.refresh")
    assert attrs(get)["freshlink.outcome"] == "stale"
    assert parent_of(bg) == get.context.span_id
    assert attrs(bg)["freshlink.outcome"] == "refreshed"
    deadline = time.monotonic() + 30
    while telemetry.metric("freshlink.refreshes") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    loads = [s for s in telemetry.finished() if s.name == "freshlink.load"]
    assert loads
    assert parent_of(loads[-1]) == bg.context.span_id
    assert telemetry.metric("freshlink.stale_served") == 1
    no_secrets(telemetry)


def test_the_async_refresh_handle_reports_its_load(
    make: Callable[..., Cache], telemetry: Telemetry
) -> None:
    cache = make(namespace="lending")

    @cache.cached(ttl=60, key="loan:{loan_id}")
    async def get_loan(loan_id: int) -> str:
        return SECRET

    instrument(cache, telemetry.tracer_provider, telemetry.meter_provider)

    async def renew() -> None:
        assert await get_loan(LOAN) == SECRET
        telemetry.spans.clear()
        assert await get_loan.refresh(LOAN) == SECRET

    asyncio.run(renew())
    (refresh,) = [s for s in telemetry.finished() if s.name == "freshlink.refresh"]
    assert attrs(refresh)["freshlink.outcome"] == "refreshed"
    (load,) = [s for s in telemetry.finished() if s.name == "freshlink.load"]
    get = next(s for s in telemetry.finished() if s.context.span_id == parent_of(load))
    assert (get.name, parent_of(get)) == ("freshlink.get", refresh.context.span_id)
    no_secrets(telemetry)


def test_uninstrument_stops_everything(make: Callable[..., Cache], telemetry: Telemetry) -> None:
    cache = make(namespace="lending")

    @cache.cached(ttl=60, key="loan:{loan_id}")
    def get_loan(loan_id: int) -> str:
        return SECRET

    with OTelInstrumentation(cache, telemetry.tracer_provider, telemetry.meter_provider) as otel:
        assert cache.tracer is otel
        assert cache.events.hit != ()
        get_loan(LOAN)
    assert cache.tracer is None
    # The hot path is as before: no hook on hits. (The cache's own counters, which metrics
    # read, stay on, as after PrometheusMetrics.close(); they never touch a hit.)
    assert cache.events.hit == ()
    for name in EVENT_NAMES:
        assert not any(getattr(h, "__self__", None) is otel for h in getattr(cache.events, name))
    count = len(telemetry.spans.get_finished_spans())
    requests = telemetry.metric("freshlink.requests", result="miss")
    get_loan(LOAN)
    get_loan(LOAN + 1)
    cache.invalidate("x")
    assert len(telemetry.spans.get_finished_spans()) == count
    assert telemetry.metric("freshlink.requests", result="miss") == requests
    # instrument() / uninstrument(cache) do the same, and again after that.
    instrument(cache, telemetry.tracer_provider, telemetry.meter_provider)
    get_loan(LOAN + 2)
    assert len(telemetry.spans.get_finished_spans()) == count + 2
    uninstrument(cache)
    uninstrument(cache)  # idempotent
    assert cache.tracer is None


def test_misuse_is_refused(telemetry: Telemetry, caches: list[Cache]) -> None:
    a, b = Cache(namespace="lending"), Cache(namespace="lending")
    caches += [a, b]
    instrument(a, telemetry.tracer_provider, telemetry.meter_provider)
    with pytest.raises(ConfigurationError, match="already instrumented"):
        instrument(a, telemetry.tracer_provider, telemetry.meter_provider)
    with pytest.raises(ConfigurationError, match="already reports"):
        instrument(b, telemetry.tracer_provider, telemetry.meter_provider)
    assert b.tracer is None  # a refused instrumentation leaves nothing behind
    assert b.events.hit == ()
    c = Cache(namespace="lending", name="other")
    caches.append(c)
    instrument(c, telemetry.tracer_provider, telemetry.meter_provider, spans=False)
    assert c.tracer is None


def test_l1_spans_can_be_left_out(telemetry: Telemetry, caches: list[Cache]) -> None:
    cache = Cache(namespace="lending")
    caches.append(cache)

    @cache.cached(ttl=60, key="loan:{loan_id}")
    def get_loan(loan_id: int) -> str:
        return SECRET

    instrument(cache, telemetry.tracer_provider, telemetry.meter_provider, l1_spans=False)
    get_loan(LOAN)
    get_loan(LOAN)  # the first hit after a fill takes the read path: traced
    names = [s.name for s in telemetry.finished()]
    assert names == ["freshlink.load", "freshlink.get", "freshlink.get"]
    for _ in range(3):
        get_loan(LOAN)  # inline L1 hits: counted, not traced
    assert [s.name for s in telemetry.finished()] == names
    assert telemetry.metric("freshlink.requests", tier="l1", result="hit") == 4


@pytest.mark.redis
def test_redis_client_spans_nest_under_freshlink(
    make_redis_cache: Callable[..., Cache], telemetry: Telemetry
) -> None:
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().instrument(tracer_provider=telemetry.tracer_provider)
    try:
        cache = make_redis_cache(namespace="lending", local=Local(maxsize=100))

        @cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}"])
        def get_loan(loan_id: int) -> str:
            return SECRET

        get_loan(0)  # scripts loaded, connections open: the lanes in use
        instrument(cache, telemetry.tracer_provider, telemetry.meter_provider)
        telemetry.spans.clear()
        get_loan(LOAN)
        cache.invalidate(f"loan:{LOAN}")
        spans = telemetry.spans.get_finished_spans()
        ours = {s.context.span_id: s for s in spans if s.name.startswith("freshlink.")}
        get = next(s for s in ours.values() if s.name == "freshlink.get")
        inval = next(s for s in ours.values() if s.name == "freshlink.invalidate")
        commands = [s for s in spans if s.context.span_id not in ours]

        def under(parent: ReadableSpan) -> list[str]:
            return [
                s.name
                for s in commands
                if s.parent is not None and s.parent.span_id == parent.context.span_id
            ]

        # The read (taking the fill's lease) and the fill's write; then the increment.
        assert under(get) == ["EVALSHA", "EVALSHA"]
        assert under(inval) == ["EVALSHA"]
        assert len(commands) == 3  # every command our calls sent is under one of ours
        no_secrets(telemetry)

        # Uninstrumented, the hot commands take their shortcut past execute_command again.
        uninstrument(cache)
        telemetry.spans.clear()
        get_loan(LOAN + 1)
        cache.invalidate("loan:1")
        assert telemetry.spans.get_finished_spans() == ()
    finally:
        RedisInstrumentor().uninstrument()


def test_metrics_alone_leave_the_hit_path_alone(
    make: Callable[..., Cache], telemetry: Telemetry
) -> None:
    cache = make(namespace="lending", local=Local(maxsize=100))

    @cache.cached(ttl=60, key="loan:{loan_id}")
    def get_loan(loan_id: int) -> str:
        return SECRET

    get_loan(LOAN)  # before: not counted (counts start when instrumented)
    instrument(cache, telemetry.tracer_provider, telemetry.meter_provider, spans=False)
    assert cache.tracer is None
    assert cache.events.hit == ()  # hits are read from the cache's own counts
    for _ in range(5):
        get_loan(LOAN)
    get_loan(LOAN + 1)
    hits = [telemetry.metric("freshlink.requests", tier=t, result="hit") for t in ("l1", "l2")]
    assert sum(hits) == 5  # on Redis, L1 is trusted once the channel is: the first may be L2
    assert telemetry.metric("freshlink.requests", tier="none", result="miss") == 1
    assert telemetry.metric("freshlink.load.duration") == 1
    assert telemetry.finished() == []
    no_secrets(telemetry)


def test_pages_and_fragments_are_traced_like_functions(
    make: Callable[..., Cache], telemetry: Telemetry
) -> None:
    from jinja2 import Environment

    from freshlink.contrib.jinja import FreshlinkExtension

    cache = make(namespace="lending")
    env = Environment(extensions=[FreshlinkExtension])
    env.freshlink_cache = cache  # type: ignore[attr-defined]
    card = env.from_string(
        '{% freshlink_cache "loan-card", loan %}{{ show(loan) }}{% endfreshlink_cache %}'
    )

    def show(loan: int) -> str:
        if loan < 0:
            raise LookupError(f"no {SECRET}")
        return f"<b>{SECRET}</b>"

    instrument(cache, telemetry.tracer_provider, telemetry.meter_provider)
    app = telemetry.tracer_provider.get_tracer("app")
    with app.start_as_current_span("GET /loans") as root:
        card.render(loan=LOAN, show=show)
        card.render(loan=LOAN, show=show)
    load, miss, hit = telemetry.finished()
    assert [s.name for s in (load, miss, hit)] == [
        "freshlink.load",
        "freshlink.get",
        "freshlink.get",
    ]
    assert parent_of(miss) == parent_of(hit) == root.get_span_context().span_id
    assert parent_of(load) == miss.context.span_id
    assert attrs(miss)["freshlink.function"] == "fragment:loan-card"
    assert (attrs(miss)["freshlink.outcome"], attrs(hit)["freshlink.outcome"]) == ("miss", "hit")

    telemetry.spans.clear()
    with pytest.raises(LookupError):
        card.render(loan=-LOAN, show=show)
    load, get = telemetry.finished()
    for s in (load, get):
        assert s.status.status_code is StatusCode.ERROR
        assert attrs(s)["error.type"] == "builtins.LookupError"
    assert [e.name for e in get.events] == ["freshlink.error"]
    assert telemetry.metric("freshlink.errors", function="fragment:loan-card") == 1
    no_secrets(telemetry)


def test_a_cached_flask_page_is_traced(telemetry: Telemetry) -> None:
    from flask import Flask

    from freshlink.contrib.flask import Freshlink

    fl = Freshlink()
    app = Flask("traced")
    app.config.update(FRESHLINK_URL="memory://", FRESHLINK_NAMESPACE="traced")

    @app.get("/loans/<int:loan_id>")
    @fl.cached_view(ttl=60, tags=["loan:{loan_id}"], name="loan_page")
    def loan_page(loan_id: int) -> str:
        return SECRET

    fl.init_app(app)
    try:
        instrument(fl.get_cache(app), telemetry.tracer_provider, telemetry.meter_provider)
        client = app.test_client()
        assert client.get(f"/loans/{LOAN}").data == SECRET.encode()
        assert client.get(f"/loans/{LOAN}").data == SECRET.encode()
    finally:
        fl.close(app)
    load, miss, hit = telemetry.finished()
    assert [s.name for s in (load, miss, hit)] == [
        "freshlink.load",
        "freshlink.get",
        "freshlink.get",
    ]
    assert parent_of(load) == miss.context.span_id
    assert attrs(miss)["freshlink.function"] == attrs(hit)["freshlink.function"] == "loan_page"
    assert (attrs(miss)["freshlink.outcome"], attrs(hit)["freshlink.outcome"]) == ("miss", "hit")
    no_secrets(telemetry)
