"""freshlink and the peer libraries, each built the same way for every scenario.

A peer is built by id (so a spawned worker process can build the same thing) around a
loader ``load(k) -> dict`` (or an async one), and comes back as a :class:`Built`: the cached
callable, whether it is async, how to drop one key's entry, and how to close it.

Every peer is configured as its documentation recommends for the job, with the same TTL and
the same value; where a library needs an application object (Flask-Caching) or an event loop
(cashews), the builder makes one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

#: The cached value: a small loan record, as the library's users cache.
VALUE = {"id": 7, "borrower": 42, "amount": "1250.00", "link": "https://pay.example/l/7?t=abc"}


def value(k: int) -> dict[str, Any]:
    """A fresh copy of the value for key ``k``."""
    return {**VALUE, "id": k}


@dataclass
class Built:
    """A cached function of one library, ready to call as ``call(k)``."""

    call: Callable[[int], Any]
    is_async: bool = False
    invalidate: Callable[[int], Any] | None = None  # drop k's entry (async if is_async)
    close: Callable[[], Any] = lambda: None  # async if is_async
    note: str = ""


#: Peer ids and their table names. Redis ones need ``url``.
NAMES: dict[str, str] = {
    "raw": "raw redis-py GET + json.loads",
    "raw-async": "raw redis.asyncio GET + json.loads",
    "dict": "plain dict memo",
    "lru": "functools.lru_cache",
    "ct": "cachetools.cached(TTLCache)",
    "ct-lock": "cachetools.cached(TTLCache, lock=Lock())",
    "ct-cond": "cachetools.cached(TTLCache, condition=Condition())",
    "dogpile-mem": "dogpile.cache memory region",
    "dogpile-redis": "dogpile.cache redis region (distributed_lock=True)",
    "flask-simple": "Flask-Caching SimpleCache memoize",
    "flask-redis": "Flask-Caching RedisCache memoize",
    "cashews-mem": "cashews mem @cache",
    "cashews-mem-early": "cashews mem @cache.early",
    "cashews-redis": "cashews redis @cache",
    "cashews-redis-lock": "cashews redis @cache(lock=True)",
    "cashews-redis-early": "cashews redis @cache.early",
    "cashews-redis-cs": "cashews redis client_side=True",
    "redis-csc": "redis-py client-side cache (RESP3)",
    "fl-mem": "freshlink memory://",
    "fl-strict": "freshlink strict, no L1",
    "fl-strict-l1": "freshlink strict L1",
    "fl-bounded": "freshlink bounded L1",
}

ASYNC_IDS = frozenset(
    {
        "raw-async",
        "cashews-mem",
        "cashews-mem-early",
        "cashews-redis",
        "cashews-redis-lock",
        "cashews-redis-early",
        "cashews-redis-cs",
    }
)


def name(pid: str, *, asynchronous: bool = False) -> str:
    """The table name of a peer id (async freshlink rows say so)."""
    n = NAMES[pid]
    if asynchronous and pid.startswith("fl-"):
        return "await " + n
    return n


def build(
    pid: str,
    load: Callable[[int], Any] | None = None,
    aload: Callable[[int], Awaitable[Any]] | None = None,
    *,
    url: str | None = None,
    ttl: float = 600.0,
    ns: str = "bench",
    asynchronous: bool = False,
) -> Built:
    """Build peer ``pid`` around ``load`` (sync peers) or ``aload`` (async peers).

    ``asynchronous=True`` builds freshlink's async variant (``async def`` loader). Raises
    :class:`Unavailable` when a peer cannot run here (say, a Redis that is too old).
    """
    load = load or value
    if aload is None:

        async def aload(k: int) -> Any:
            return load(k)

    if pid.startswith("fl-"):
        return _freshlink(pid, load, aload, url, ttl, ns, asynchronous)
    if pid.startswith("cashews"):
        return _cashews(pid, aload, url, ttl, ns)
    if pid.startswith("flask"):
        return _flask(pid, load, url, ttl, ns)
    if pid.startswith("dogpile"):
        return _dogpile(pid, load, url, ttl, ns)
    return _simple(pid, load, aload, url, ttl, ns)


class Unavailable(Exception):
    """This peer cannot be measured here (the message says why)."""


def _simple(
    pid: str,
    load: Callable[[int], Any],
    aload: Callable[[int], Awaitable[Any]],
    url: str | None,
    ttl: float,
    ns: str,
) -> Built:
    import cachetools

    if pid == "dict":
        memo: dict[int, Any] = {}

        def dict_memo(k: int) -> Any:
            try:
                return memo[k]
            except KeyError:
                memo[k] = v = load(k)
                return v

        return Built(dict_memo, invalidate=lambda k: memo.pop(k, None))
    if pid == "lru":
        lru = functools.lru_cache(maxsize=None)(load)
        return Built(lru, invalidate=lambda k: lru.cache_clear())
    if pid in ("ct", "ct-lock", "ct-cond"):
        store: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(1 << 20, ttl)
        kw: dict[str, Any] = {}
        if pid == "ct-lock":
            kw["lock"] = threading.Lock()
        elif pid == "ct-cond":
            kw["condition"] = threading.Condition()
        f = cachetools.cached(store, **kw)(load)
        return Built(f, invalidate=lambda k: store.pop(cachetools.keys.hashkey(k), None))
    if pid == "raw":
        import redis

        r = redis.Redis.from_url(url)
        return _cache_aside(r, f"{ns}:raw", load, ttl)
    if pid == "raw-async":
        import redis.asyncio

        ar = redis.asyncio.Redis.from_url(url)

        async def araw(k: int) -> Any:
            b = await ar.get(f"{ns}:raw:{k}")
            if b is None:
                v = await aload(k)
                await ar.set(f"{ns}:raw:{k}", json.dumps(v), ex=int(ttl))
                return v
            return json.loads(b)

        async def adel(k: int) -> None:
            await ar.delete(f"{ns}:raw:{k}")

        return Built(araw, is_async=True, invalidate=adel, close=ar.aclose)
    if pid == "redis-csc":
        import redis
        from redis.cache import CacheConfig

        try:
            rc = redis.Redis.from_url(url, protocol=3, cache_config=CacheConfig())
            rc.get(f"{ns}:csc:probe")
        except Exception as exc:  # redis-py refuses servers older than 7.4
            version = redis.Redis.from_url(url).info("server")["redis_version"]
            raise Unavailable(
                f"redis-py {redis.__version__} refuses Redis {version}: client-side caching "
                f"needs Redis >= 7.4 ({type(exc).__name__})"
            ) from exc

        return _cache_aside(rc, f"{ns}:csc", load, ttl)
    raise KeyError(pid)


def _cache_aside(client: Any, prefix: str, load: Callable[[int], Any], ttl: float) -> Built:
    """The one-round-trip cache-aside floor: GET + json.loads, SET on a miss."""

    def get(k: int) -> Any:
        b = client.get(f"{prefix}:{k}")
        if b is None:
            v = load(k)
            client.set(f"{prefix}:{k}", json.dumps(v), ex=int(ttl))
            return v
        return json.loads(b)

    return Built(get, invalidate=lambda k: client.delete(f"{prefix}:{k}"), close=client.close)


def _freshlink(
    pid: str,
    load: Callable[[int], Any],
    aload: Callable[[int], Awaitable[Any]],
    url: str | None,
    ttl: float,
    ns: str,
    asynchronous: bool,
) -> Built:
    from freshlink import Cache, Local

    if pid == "fl-mem":
        cache = Cache(namespace=ns)
    elif pid == "fl-strict":
        cache = Cache(url, namespace=ns, local=None)
    elif pid == "fl-strict-l1":
        cache = Cache(url, namespace=ns, local=Local(mode="strict"))
    elif pid == "fl-bounded":
        cache = Cache(url, namespace=ns, local=Local(max_staleness=0.1))
        if not cache.backend.listener.alive.wait(10):  # type: ignore[attr-defined]
            raise RuntimeError("freshlink's invalidation channel did not come up")
    else:
        raise KeyError(pid)
    # The key and tags of the design's example: a key template, the loan's tag, a user tag.
    deco = cache.cached(ttl=ttl, key="loan:{k}", tags=["loan:{k}", "user:42"])
    if asynchronous:
        f = deco(aload)

        async def ainv(k: int) -> None:
            await cache.ainvalidate(f"loan:{k}")

        return Built(f, is_async=True, invalidate=ainv, close=cache.aclose)
    return Built(deco(load), invalidate=lambda k: cache.invalidate(f"loan:{k}"), close=cache.close)


def _dogpile(pid: str, load: Callable[[int], Any], url: str | None, ttl: float, ns: str) -> Built:
    from dogpile.cache import make_region

    if pid == "dogpile-mem":
        region = make_region().configure("dogpile.cache.memory", expiration_time=ttl)
    else:
        region = make_region().configure(
            "dogpile.cache.redis",
            expiration_time=ttl,
            arguments={
                "url": url,
                "distributed_lock": True,
                "thread_local_lock": False,  # the lock is shared by threads (dogpile's advice)
                "lock_timeout": 30,
                "redis_expiration_time": int(ttl) * 2,
            },
        )
    f = region.cache_on_arguments(namespace=ns)(load)

    def close() -> None:
        client = getattr(region.backend, "writer_client", None)
        if client is not None:
            client.close()

    return Built(f, invalidate=f.invalidate, close=close)


def _flask(pid: str, load: Callable[[int], Any], url: str | None, ttl: float, ns: str) -> Built:
    from flask import Flask
    from flask_caching import Cache as FlaskCache

    config: dict[str, Any] = {"CACHE_DEFAULT_TIMEOUT": int(ttl), "CACHE_THRESHOLD": 1 << 20}
    if pid == "flask-simple":
        config["CACHE_TYPE"] = "SimpleCache"
    else:
        config.update(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=url, CACHE_KEY_PREFIX=ns + ":")
    app = Flask(f"bench-{ns}")
    fc = FlaskCache(config=config)
    fc.init_app(app)
    f = fc.memoize(timeout=int(ttl))(load)
    ctx = app.app_context()
    ctx.push()  # memoize reads current_app; a thread without a context uses init_app's app

    def close() -> None:
        # Popped from another thread than the one that pushed it: nothing to undo.
        with contextlib.suppress(Exception):
            ctx.pop()

    return Built(f, invalidate=lambda k: fc.delete_memoized(f, k), close=close)


def _cashews(
    pid: str, aload: Callable[[int], Awaitable[Any]], url: str | None, ttl: float, ns: str
) -> Built:
    from cashews import Cache as CashewsCache

    c = CashewsCache()
    if pid.startswith("cashews-mem"):
        c.setup("mem://", size=1 << 20)  # the default keeps 1,000 entries
    elif pid == "cashews-redis-cs":
        c.setup(url, client_side=True)
    else:
        c.setup(url)
    key = ns + ":" + pid + ":loan:{k}"
    stored = key
    if pid.endswith("-early"):
        f = c.early(ttl=ttl, early_ttl=ttl * 0.8, key=key)(aload)
        stored = "early:v2:" + key  # where @cache.early stores it (its prefix)
    elif pid.endswith("-lock"):
        f = c(ttl=ttl, key=key, lock=True)(aload)
    else:
        f = c(ttl=ttl, key=key)(aload)

    async def inv(k: int) -> None:
        await c.delete(stored.format(k=k))

    async def close() -> None:
        await c.close()

    return Built(f, is_async=True, invalidate=inv, close=close)


def run_sync(coro: Awaitable[Any], loop: asyncio.AbstractEventLoop) -> Any:
    """Run one awaitable to completion on ``loop`` (a loop kept for a peer's lifetime)."""
    return loop.run_until_complete(coro)
