"""Fixtures every test layer uses (a cache, the session's redis-server), and the Redis skip.

Without ``redis-server`` on PATH, every test that needs one (marked ``redis``, ``cluster`` or
``sentinel``, or using a fixture that starts a server) is skipped with one reason, so that a
first run on a machine without Redis is green. ``REQUIRE_REDIS_SERVER=1`` (set by .ci/run)
turns the same situation into a usage error: CI must never pass by skipping them.
"""

from __future__ import annotations

import functools
import json
import os
import select
import shutil
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from freshlink import Cache
from freshlink.testing import RedisServer

REDIS_MARKERS = frozenset({"redis", "cluster", "sentinel"})
#: The fixtures that start a redis-server; the fixtures built on them follow (``fixturenames``
#: is the closure), so a test that uses ``redis_url`` but lacks the marker is still covered.
REDIS_FIXTURES = frozenset({"redis_server", "redis_cluster", "redis_sentinel", "acl_server"})
NO_REDIS = "redis-server not found on PATH"
INSTALL = "apt-get install redis-server redis-tools, or run bash .ci/run"


@functools.cache
def redis_missing() -> bool:
    """No ``redis-server`` on PATH (looked up once per run)."""
    return shutil.which("redis-server") is None


def needs_redis(item: pytest.Item) -> bool:
    """The test needs a real redis-server: a Redis marker, or a fixture that starts one."""
    if any(mark.name in REDIS_MARKERS for mark in item.iter_markers()):
        return True
    return not REDIS_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def pytest_collection_finish(session: pytest.Session) -> None:
    """``REQUIRE_REDIS_SERVER=1`` and no redis-server: a selected Redis test stops the run."""
    if os.environ.get("REQUIRE_REDIS_SERVER", "") in ("", "0") or not redis_missing():
        return
    wanted = sum(needs_redis(item) for item in session.items)
    if wanted:
        raise pytest.UsageError(
            f"{NO_REDIS} and REQUIRE_REDIS_SERVER=1: {wanted} selected tests need it ({INSTALL})"
        )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a Redis test, before its fixtures start anything, when redis-server is missing."""
    if redis_missing() and needs_redis(item):
        # Raised here, not added as a mark: -ra then shows one line for all of them.
        pytest.skip(f"{NO_REDIS}: Redis tests skipped ({INSTALL})")


@pytest.fixture
def cache() -> Cache:
    return Cache(namespace="test")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if not redis_server.ping():  # a test may have stopped it
        redis_server.start()
    redis_server.cli("FLUSHALL")
    return redis_server.url


@pytest.fixture
def caches() -> Iterator[list[Cache]]:
    """Caches created by a test; closed (threads stopped) after it."""
    made: list[Cache] = []
    yield made
    for c in made:
        c.close()


@pytest.fixture
def cache_factory(caches: list[Cache]) -> Callable[[str], Callable[..., Cache]]:
    """``cache_factory(url)``: make caches on ``url`` (namespace "t" unless given), closed after."""

    def on(url: str) -> Callable[..., Cache]:
        def make(**kw: Any) -> Cache:
            kw.setdefault("namespace", "t")
            c = Cache(url, **kw)
            caches.append(c)
            return c

        return make

    return on


@pytest.fixture
def make_redis_cache(
    redis_url: str, cache_factory: Callable[[str], Callable[..., Cache]]
) -> Callable[..., Cache]:
    return cache_factory(redis_url)


def _in_child(work: Callable[[], dict[str, Any]], timeout: float = 60.0) -> dict[str, Any]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        try:
            result = work()
        except BaseException as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        if not select.select([pipe], [], [], timeout)[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"error": f"the child hung (no report in {timeout} s)"}
        data = pipe.read()
    os.waitpid(pid, 0)
    return dict(json.loads(data))


@pytest.fixture
def in_child() -> Callable[..., dict[str, Any]]:
    """``in_child(work, timeout=60)``: run ``work`` in a forked child; what it reported (a
    JSON-able dict), or {"error": ...} if it raised or sent nothing within ``timeout`` s (the
    child is then killed)."""
    return _in_child


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The SQLAlchemy URL of a throwaway PostgreSQL server (freshlink.testing.postgres).

    Without PostgreSQL installed the tests that need it are skipped, unless
    ``REQUIRE_REDIS_SERVER=1`` (CI installs it): CI never passes by skipping them.
    """
    from freshlink.testing.postgres import PostgresServer, postgres_bindir

    if postgres_bindir() is None:
        if os.environ.get("REQUIRE_REDIS_SERVER", "") not in ("", "0"):
            pytest.fail("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)")
        pytest.skip("PostgreSQL not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg")
    with PostgresServer() as server:
        yield server.url
