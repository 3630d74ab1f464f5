"""A cache used in a parent and then forked (gunicorn ``--preload``, Celery prefork, ``fork``).

The child must start its own channel and connections on first use: the parent's listener
thread does not survive a fork, and without a live channel a bounded L1 is never trusted, so
every "hit" went to Redis (3 commands a hit) and the L1 was dead weight.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from freshlink import Cache, Local
from freshlink.testing import free_port

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


def evalsha_calls(client: redis.Redis) -> int:
    """Scripts the server has run so far (the channel's PINGs are not counted)."""
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def test_a_forked_child_keeps_a_working_l1_and_hears_invalidations(
    redis_url: str, admin: redis.Redis, caches: list[Cache], in_child: Callable[..., dict[str, Any]]
) -> None:
    cache = Cache(redis_url, namespace="fork", local=Local(max_staleness=0.1))
    writer = Cache(redis_url, namespace="fork", local=None)
    caches += [cache, writer]
    db = {"v": 1}

    @cache.cached(ttl=60, key="loan:{i}", tags=["loan:{i}"])
    def loan(i: int) -> int:
        return db["v"]

    assert cache.backend.listener.alive.wait(5)  # type: ignore[attr-defined]
    assert loan(1) == 1  # used once in the parent, as a preloaded app would be

    def child() -> dict[str, Any]:
        assert loan(1) == 1  # the first read starts the child's own channel
        listener = cache.backend.listener  # type: ignore[attr-defined]
        alive = listener.alive.wait(5)
        # Past any trust copied from the parent: only the child's own channel can vouch now.
        time.sleep(0.3)
        assert loan(1) == 1
        before = evalsha_calls(admin)
        for _ in range(2000):
            loan(1)
        hits_cost = evalsha_calls(admin) - before
        db["v"] = 2  # the child's own "database" changes, and the parent invalidates
        os.write(ready_w, b"x")
        os.read(go_r, 1)
        seen = wait_until(lambda: loan(1) == 2, timeout=2.0)
        return {"alive": alive, "hits_cost": hits_cost, "seen": seen}

    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def invalidate_when_ready() -> None:
        os.read(ready_r, 1)
        writer.invalidate("loan:1")
        os.write(go_w, b"x")

    t = threading.Thread(target=invalidate_when_ready, daemon=True)
    t.start()
    result = in_child(child)
    t.join(5)
    assert "error" not in result, result["error"]
    assert result["alive"], "the child never started its own invalidation channel"
    # 2,000 L1 hits: no script at all (each went to Redis before: 2,000 or more).
    assert result["hits_cost"] == 0
    assert result["seen"], "the child's L1 never heard the parent's invalidation"
    # The parent's own channel was left alone by the child.
    assert cache.backend.listener.alive.is_set()  # type: ignore[attr-defined]


def test_a_forked_child_runs_the_async_path_on_its_own_loop(
    redis_url: str, admin: redis.Redis, caches: list[Cache], in_child: Callable[..., dict[str, Any]]
) -> None:
    cache = Cache(redis_url, namespace="afork", local=Local(max_staleness=0.1))
    caches.append(cache)
    db = {"v": 1}

    @cache.cached(ttl=60, key="loan:{i}", tags=["loan:{i}"])
    async def loan(i: int) -> int:
        return db["v"]

    # The parent's asyncio client and its connections belong to the parent's loop.
    assert asyncio.run(loan(1)) == 1
    assert cache.backend.listener.alive.wait(5)  # type: ignore[attr-defined]

    def child() -> dict[str, Any]:
        async def main() -> dict[str, Any]:
            assert await loan(2) == 1  # a miss: a script on a connection of the child's own
            listener = cache.backend.listener  # type: ignore[attr-defined]
            alive = await asyncio.to_thread(listener.alive.wait, 5)
            await asyncio.sleep(0.3)  # past any trust copied from the parent
            assert await loan(2) == 1
            before = evalsha_calls(admin)
            for _ in range(500):
                await loan(2)
            cost = evalsha_calls(admin) - before
            db["v"] = 2
            await cache.ainvalidate("loan:2")  # the child's own write: read at once
            after = await loan(2)
            await cache.aclose()
            return {"alive": alive, "cost": cost, "after": after}

        return asyncio.run(main())

    result = in_child(child)
    assert "error" not in result, result["error"]
    assert result["alive"]
    assert result["cost"] == 0
    assert result["after"] == 2


@pytest.mark.parametrize("client", ["made from the URL", "passed in"])
def test_a_fork_while_another_thread_is_inside_the_pool_does_not_hang_the_child(
    redis_url: str, caches: list[Cache], client: str, in_child: Callable[..., dict[str, Any]]
) -> None:
    # The gunicorn master's warm-up thread (or channel thread) inside redis-py's pool at the
    # instant of the fork: the child inherited its lock held, and redis-py's reset of the
    # inherited pool (on the child's first command, or when it collected the parent's client)
    # waited for it for ever. The held lock is what the thread leaves; holding it stands in for
    # the thread being preempted there.
    target = redis.Redis.from_url(redis_url) if client == "passed in" else redis_url
    cache = Cache(target, namespace="pool", local=None)
    caches.append(cache)
    stats = cache.enable_stats()
    db = {"v": 1}

    @cache.cached(ttl=60, key="loan:{i}")
    def loan(i: int) -> int:
        return db["v"]

    assert loan(1) == 1
    pool = cache.backend.client.connection_pool  # type: ignore[attr-defined]
    inside, leave = threading.Event(), threading.Event()

    def in_the_pool() -> None:
        with pool._lock:
            inside.set()
            leave.wait(30)

    holder = threading.Thread(target=in_the_pool, daemon=True)
    holder.start()
    assert inside.wait(5)

    def child() -> dict[str, Any]:
        db["v"] = 2  # so that only Redis can answer 1 for loan 1
        # Read on the thread that forked, as a gunicorn worker does (a new thread here could be
        # given the parent holder's thread id, which the inherited RLock takes for its owner).
        answers = [loan(1), loan(2)]
        gc.collect()  # the parent's client, if the child dropped it, is closed here
        return {"answers": answers, "errors": stats.errors}

    try:
        result = in_child(child, timeout=15)
    finally:
        leave.set()
        holder.join(5)
    assert "error" not in result, result["error"]
    # Loan 1 from Redis (the parent's fill), loan 2 loaded and stored: both through Redis.
    assert result["answers"] == [1, 2]
    assert result["errors"] == 0


PRELOADED = """
from examples.flask_lending.app import create_app
from examples.flask_lending.services import my_loan

app = create_app()
with app.app_context():
    my_loan(1)  # the master uses the cache before forking (its channel thread starts)
"""


def test_gunicorn_preload_workers_serve_from_l1_and_stay_coherent(
    redis_url: str, admin: redis.Redis, tmp_path: Path
) -> None:
    pytest.importorskip("gunicorn")
    (tmp_path / "preloaded.py").write_text(PRELOADED)
    port = free_port()
    env = {
        **os.environ,
        "FRESHLINK_URL": redis_url,
        "FRESHLINK_LOCAL": "bounded",
        "LENDING_DATABASE": str(tmp_path / "lending.sqlite3"),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--preload",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--pythonpath",
            f"{tmp_path},{ROOT}",
            "preloaded:app",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> str:
        request = urllib.request.Request(base + path, headers={"Cookie": "borrower=1"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(response.read().decode())

    def token(page: str) -> str:
        found = re.search(r'data-token="([^"]+)"', page)
        assert found is not None, page
        return found.group(1)

    try:
        assert wait_until(lambda: _up(base), timeout=30), proc.stderr.read1().decode()  # type: ignore[union-attr]
        for _ in range(40):  # both workers load once and start their channels
            get("/my-loan")
        time.sleep(0.3)
        before = evalsha_calls(admin)
        pages = [get("/my-loan") for _ in range(200)]
        cost = evalsha_calls(admin) - before
        assert "expired" in pages[-1]  # Ada's link starts expired
        renew = urllib.request.Request(
            base + "/staff/loans/1/renew", method="POST", headers={"Accept": "application/json"}
        )
        with urllib.request.urlopen(renew, timeout=5) as response:
            renewed = json.loads(response.read())
        # After the acknowledged renewal, every worker shows the new link at once or within
        # the bound; never "expired" once it has passed.
        time.sleep(0.15)
        after = [get("/my-loan") for _ in range(40)]
    finally:
        # Teardown only: gunicorn stops its workers gracefully, which on a loaded machine can
        # take longer than an idle one suggests; the assertions above are what is tested.
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    # Served from each worker's L1: a handful of scripts, not one (or three) per page.
    assert cost < 20, f"{cost} scripts for 200 pages: the workers' L1 is not trusted"
    assert all('data-link-state="valid"' in page for page in after)
    assert {token(page) for page in after} == {renewed["token"]}


def _up(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False
