"""A pytest plugin (entry point ``pytest11``): a real ``redis-server`` for your own tests.

Installing freshlink registers it, so every pytest run has these fixtures:

* ``freshlink_redis_server`` (session): one :class:`~freshlink.testing.RedisServer` on a free
  loopback port, started on first use and stopped at the end of the run;
* ``freshlink_redis_url`` (function): that server's URL, emptied (``FLUSHALL``) before each
  test and restarted if a test stopped it;
* ``freshlink_cache`` (function): a :class:`~freshlink.Cache` on that URL, closed after the
  test (needs ``freshlink[redis]``).

Without ``redis-server`` on PATH a test that uses them is skipped with one clear reason. The
names are prefixed so that they never clash with a project's own ``redis_url`` or ``cache``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

# Nothing from freshlink at import time: pytest loads this module into every run of every
# project that has freshlink installed (tests/integration/test_pytest_plugin.py checks it).
if TYPE_CHECKING:
    from ..cache import Cache
    from .server import RedisServer

__all__ = ["freshlink_cache", "freshlink_redis_server", "freshlink_redis_url"]

#: The reason a test using these fixtures is skipped on a machine without Redis.
SKIP_REASON = (
    "redis-server not found on PATH (apt-get install redis-server, or brew install redis): "
    "tests using the freshlink_redis_* fixtures are skipped"
)


@pytest.fixture(scope="session")
def freshlink_redis_server() -> Iterator[RedisServer]:
    """A throwaway ``redis-server`` for the whole run; skips the test when none is installed."""
    if shutil.which("redis-server") is None:
        pytest.skip(SKIP_REASON)
    # Imported here: a plugin loaded into every pytest run of every project should cost nothing
    # until a test asks for a server.
    from .server import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture
def freshlink_redis_url(freshlink_redis_server: RedisServer) -> str:
    """``redis://127.0.0.1:<port>/0`` of the session's server, emptied before the test."""
    if not freshlink_redis_server.ping():  # a test may have stopped or killed it
        freshlink_redis_server.start()
    # Through the tiny RESP client: neither redis-cli nor redis-py has to be installed.
    from .resp import redis_command

    redis_command(freshlink_redis_server.port, "FLUSHALL")
    return freshlink_redis_server.url


@pytest.fixture
def freshlink_cache(freshlink_redis_url: str) -> Iterator[Cache]:
    """A :class:`~freshlink.Cache` on the session's redis-server (namespace ``test``)."""
    pytest.importorskip(
        "redis", reason="freshlink_cache needs redis-py: pip install 'freshlink[redis]'"
    )
    from ..cache import Cache

    cache = Cache(freshlink_redis_url, namespace="test")
    try:
        yield cache
    finally:
        cache.close()
