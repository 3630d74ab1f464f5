"""The ``pytest11`` plugin, as a user meets it: a tiny test file run by pytest in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PLUGIN = "freshlink.testing.pytest_plugin"

# A user's test file: their own ``redis_url`` and ``cache`` fixtures (the names this repository's
# conftest uses too) sit next to the plugin's, which must not shadow or clash with them.
USER_TESTS = """
import pytest
from freshlink import Cache

@pytest.fixture
def redis_url():
    return "mine"

@pytest.fixture
def cache():
    return "my cache"

def test_own_fixtures_are_untouched(redis_url, cache):
    assert (redis_url, cache) == ("mine", "my cache")

def test_server_answers(freshlink_redis_server):
    assert freshlink_redis_server.ping()

def test_cached_function_on_real_redis(freshlink_cache, freshlink_redis_url):
    calls = []

    @freshlink_cache.cached(ttl=60, tags=["loan:{loan_id}"])
    def loan(loan_id):
        calls.append(loan_id)
        return {"id": loan_id, "n": len(calls)}

    assert loan(7) == loan(7) == {"id": 7, "n": 1}
    freshlink_cache.invalidate("loan:7")
    assert loan(7) == {"id": 7, "n": 2}
    other = Cache(freshlink_redis_url, namespace="test")  # another process's view
    try:
        assert other.get(loan.key(7)) is not None
    finally:
        other.close()

def test_each_test_starts_empty(freshlink_redis_server, freshlink_redis_url):
    import redis
    client = redis.Redis.from_url(freshlink_redis_url)
    assert client.dbsize() == 0
    client.set("left", "behind")

def test_and_the_next_one_too(freshlink_redis_url):
    import redis
    assert redis.Redis.from_url(freshlink_redis_url).dbsize() == 0
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.RunResult:
    pytester.makepyfile(test_user=USER_TESTS)
    # Loaded by name, entry points off: the run is the same whether or not this checkout is
    # the installed freshlink (the entry point itself is checked against pyproject.toml below).
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("PYTHONPATH", str(SRC))
    return pytester.runpytest_subprocess("-p", PLUGIN, "-rs", "-p", "no:cacheprovider")


def test_the_entry_point_names_the_plugin_module() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["entry-points"]["pytest11"] == {"freshlink": PLUGIN}


def test_loading_the_plugin_imports_nothing_else_of_freshlink() -> None:
    # pytest imports the plugin in every run of every project that has freshlink installed:
    # the package and its parents (which Python imports first) must be all it costs.
    code = (
        f"import sys, {PLUGIN}\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'freshlink')))\n"
        # The lazily imported names still work.
        "from freshlink.testing import RedisServer, free_port\n"
        "import freshlink\n"
        "print(freshlink.Cache.__module__, RedisServer.__module__, 'Cache' in dir(freshlink))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.splitlines() == [
        f"freshlink freshlink.testing {PLUGIN}",
        "freshlink.cache freshlink.testing.server True",
    ]


@pytest.mark.slow
@pytest.mark.redis
def test_users_get_a_real_redis_server(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run(pytester, monkeypatch)
    result.assert_outcomes(passed=5)


@pytest.mark.slow
def test_without_redis_server_the_tests_skip_with_one_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A PATH holding only the interpreter: redis-server cannot be found.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert shutil.which("redis-server", path=str(bin_dir)) is None
    result = _run(pytester, monkeypatch)
    result.assert_outcomes(passed=1, skipped=4)
    result.stdout.fnmatch_lines(["*redis-server not found on PATH*freshlink_redis_* fixtures*"])
