"""The Redis backend: one round trip per warm read, atomic invalidation, leases, a channel.

redis-py is imported lazily by :func:`_redis` so that ``import freshlink`` never needs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import math
import random
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..errors import BackendError, ConfigurationError, InvalidationError, MissingDependencyError
from . import _scripts
from .base import Backend, Entry, InvalidationListener, Read, new_generation
from .channel import Fanout, Listener

__all__ = ["DEFAULT_CLIENT_OPTIONS", "RedisBackend", "server_identity"]

#: SHA1 of each script, as EVALSHA names it.
_SHA = {
    name: hashlib.sha1(getattr(_scripts, name).encode(), usedforsecurity=False).hexdigest()
    for name in _scripts.__all__
}

#: Client defaults for a cache: a dead or stalled Redis costs milliseconds, not the seconds
#: redis-py's general-purpose defaults allow (5 s timeouts, several retries).
DEFAULT_CLIENT_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 0.25,
    "socket_timeout": 0.25,
    "health_check_interval": 0,
}


def _redis(module: str = "redis") -> Any:
    """redis-py, or one of its modules (untyped: redis-py ships no complete stubs)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised without the extra installed
        raise MissingDependencyError(
            "the Redis backend needs redis-py: pip install 'freshlink[redis]'"
        ) from exc


def _retry() -> Any:
    _redis()
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    # One quick retry absorbs a dropped idle connection; more would only stall requests.
    return Retry(ExponentialBackoff(cap=0.02, base=0.002), retries=1)


def server_identity(info: Any) -> str:
    """The server's identity from INFO: its run id (new on every restart) and replication id
    (new on every promotion), so a failover, or a failback to a master that lost writes while
    it was cut off, changes it as surely as a restart does."""
    if isinstance(info, dict):
        fields = {k: str(v) for k, v in info.items() if k in ("run_id", "master_replid")}
    else:
        text = info.decode() if isinstance(info, bytes) else str(info)
        fields = dict(
            line.strip().split(":", 1)
            for line in text.splitlines()
            if line.startswith(("run_id:", "master_replid:"))
        )
    if "run_id" not in fields:
        raise BackendError("INFO did not report a run_id")
    return fields["run_id"][:16] + ":" + fields.get("master_replid", "")[:16]


def _entry_from(
    names: tuple[str, ...] | bytes, stamps_b: bytes, meta_b: bytes, payload: bytes
) -> Entry:
    created, ttl, load_time = meta_b.split(b",")
    return Entry(
        payload,
        names if isinstance(names, tuple) else tuple(names.decode().split("\n")),
        tuple(map(int, stamps_b.split(b","))),
        float(created),
        float(ttl) if ttl else None,
        float(load_time),
    )


def _meta(entry: Entry) -> str:
    ttl = "" if entry.ttl is None else repr(entry.ttl)
    return f"{entry.created!r},{ttl},{entry.load_time!r}"


def _retain_ms(retain: float | None) -> int:
    return -1 if retain is None else max(int(retain * 1000), 1)


class _Waiters:
    """Processes waiting for another process's fill, woken by the fill channel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, list[Callable[[str, str], None]]] = {}

    def add(self, key: str, callback: Callable[[str, str], None]) -> None:
        with self._lock:
            self._by_key.setdefault(key, []).append(callback)

    def remove(self, key: str, callback: Callable[[str, str], None]) -> None:
        with self._lock:
            lst = self._by_key.get(key)
            if lst and callback in lst:
                lst.remove(callback)
                if not lst:
                    del self._by_key[key]

    def notify(self, status: str, rest: str) -> None:
        key, _, message = rest.partition("\n")
        with self._lock:
            callbacks = self._by_key.pop(key, [])
        for cb in callbacks:
            cb(status, message)


class RedisBackend(Backend):
    """Entries and generations in Redis, shared by every process that uses the same server."""

    synchronous = False
    supports_leases = True
    #: Whether scripts first call :meth:`_before_script` (a class flag: one attribute read on
    #: the hot path of backends that need no check).
    _checks_master = False

    def __init__(
        self,
        client: Any = None,
        aclient: Any = None,
        *,
        url: str | None = None,
        namespace: str = "freshlink",
        gen_ttl: float = 30.0,
        ping_interval: float = 0.02,
        rng: Callable[[], float] = random.random,
        client_options: dict[str, Any] | None = None,
        wait_replicas: int | str = 0,
        wait_timeout: float = 0.5,
    ) -> None:
        if client is None and aclient is None and url is None:
            raise ConfigurationError("RedisBackend needs a url, a client or an async client")
        for given in (client, aclient):
            if given is not None and given.get_encoder().decode_responses:
                raise ConfigurationError(
                    "freshlink needs a redis client with decode_responses=False (payloads are "
                    "bytes); create a separate client for freshlink"
                )
        if wait_replicas != "auto" and (
            not isinstance(wait_replicas, int)
            or isinstance(wait_replicas, bool)
            or wait_replicas < 0
        ):
            raise ConfigurationError(
                f"wait_replicas must be an int >= 0 or 'auto', got {wait_replicas!r}"
            )
        if not wait_timeout > 0:
            raise ConfigurationError(f"wait_timeout must be > 0 seconds, got {wait_timeout!r}")
        #: Replicas that must have an invalidation (``WAIT``) before it is acknowledged, or
        #: ``"auto"``: one on each master that has a replica it could fail over to, none on a
        #: master without (nothing could be promoted there having missed the write).
        self.wait_replicas = wait_replicas
        self._wait_ms = max(int(wait_timeout * 1000), 1)
        # Set (by the Sentinel master watch) when async connections point at an old master.
        self._async_stale = False
        self.url = url
        self._options = {**DEFAULT_CLIENT_OPTIONS, **(client_options or {})}
        # The wait is sent as several WAITs of at most 100 ms (and at most half the socket
        # timeout) in a row on the same connection, each returning at once when the replicas
        # have the write: a single long WAIT would be cut off by the socket timeout, which
        # makes redis-py retry the whole round, the increment included, on another connection.
        socket_timeout = self._options.get("socket_timeout") or math.inf
        slice_ms = max(min(100, self._wait_ms, int(socket_timeout * 500)), 1)
        self._wait_slices = [slice_ms] * math.ceil(self._wait_ms / slice_ms)
        self._client = client
        self._aclient = aclient
        # An asyncio client made here (from the URL or the sync client) is remade in a forked
        # child; one passed in is the caller's, so only its pool's parent connections are
        # forgotten there.
        self._own_aclient = aclient is None
        if client is not None:
            self._hook(client, self._on_connect)
        if aclient is not None:
            self._hook(aclient, self._aon_connect)
        self._rng = rng
        # How long a generation lives while no stored entry depends on it (a read miss, a
        # tag nobody caches): storing an entry extends its generations to the entry's own
        # lifetime, so this only bounds what a key-cardinality attack can leave behind.
        self._gen_ttl_ms = str(int(gen_ttl * 1000))
        self.namespace = namespace
        self.inv_channel = namespace + ":inv"
        self.fill_channel = namespace + ":fill"
        self._ping_interval = ping_interval
        self._run_id: str | None = None
        self._lock = threading.Lock()
        self._listeners: list[InvalidationListener] = []
        self._alive_hooks: list[Callable[[float], None]] = []
        self._reset_hooks: list[Callable[[], None]] = []
        self._listener: Listener | Fanout | None = None
        self._waiters = _Waiters()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackend:
        """A backend for ``redis://``, ``rediss://`` or ``unix://`` URLs."""
        _redis()
        return cls(url=url, **options)

    # ------------------------------------------------------------------ clients

    def _on_connect(self, conn: Any) -> None:
        # Every new connection learns the server's run id. Entries carry the run id they were
        # written under, so after a restart (even one restoring an older snapshot, whose
        # generations are older than invalidations already acknowledged) or a failover to a
        # replica that missed writes, nothing written before is ever valid again.
        conn.on_connect()
        conn.send_command("INFO")
        self._run_id = server_identity(conn.read_response())

    async def _aon_connect(self, conn: Any) -> None:
        await conn.on_connect()
        await conn.send_command("INFO")
        self._run_id = server_identity(await conn.read_response())

    @property
    def client(self) -> Any:
        """The sync redis-py client (created from the URL on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    redis = _redis()
                    if self.url is None:
                        kwargs = dict(self._aclient.connection_pool.connection_kwargs)
                        kwargs.pop("redis_connect_func", None)
                        self._client = redis.Redis(**kwargs, redis_connect_func=self._on_connect)
                    else:
                        self._client = redis.Redis.from_url(
                            self.url,
                            retry=_retry(),
                            redis_connect_func=self._on_connect,
                            **self._options,
                        )
        return self._client

    def _hook(self, client: Any, hook: Callable[..., Any]) -> None:
        # A client passed in by the user: make its future connections learn the run id too,
        # after the user's own connect hook if it has one (that hook runs on_connect itself).
        kwargs = client.connection_pool.connection_kwargs
        theirs = kwargs.get("redis_connect_func")
        if theirs is None:
            kwargs["redis_connect_func"] = hook
            return
        if theirs == hook or getattr(theirs, "_freshlink", False):
            return
        if asyncio.iscoroutinefunction(theirs):

            async def acomposed(conn: Any) -> None:
                await theirs(conn)
                await conn.send_command("INFO")
                self._run_id = server_identity(await conn.read_response())

            acomposed._freshlink = True  # type: ignore[attr-defined]
            kwargs["redis_connect_func"] = acomposed
            return

        def composed(conn: Any) -> None:
            theirs(conn)
            conn.send_command("INFO")
            self._run_id = server_identity(conn.read_response())

        composed._freshlink = True  # type: ignore[attr-defined]
        kwargs["redis_connect_func"] = composed

    @property
    def aclient(self) -> Any:
        """The asyncio redis-py client (created from the URL on first use)."""
        if self._aclient is None:
            redis = _redis()
            from redis.asyncio.retry import Retry as AsyncRetry
            from redis.backoff import ExponentialBackoff

            if self.url is None:
                kwargs = dict(self._client.connection_pool.connection_kwargs)
                kwargs.pop("redis_connect_func", None)
                kwargs.pop("retry", None)
                self._aclient = redis.asyncio.Redis(**kwargs, redis_connect_func=self._aon_connect)
            else:
                self._aclient = redis.asyncio.Redis.from_url(
                    self.url,
                    retry=AsyncRetry(ExponentialBackoff(cap=0.02, base=0.002), retries=1),
                    redis_connect_func=self._aon_connect,
                    **self._options,
                )
        return self._aclient

    def run_id(self) -> str:
        """The run id of the server we are connected to (fetched if not known yet)."""
        if self._run_id is None:
            try:
                self._run_id = server_identity(self.client.execute_command("INFO"))
            except Exception as exc:
                raise self._error(exc) from exc
        assert self._run_id is not None
        return self._run_id

    async def arun_id(self) -> str:
        """Async :meth:`run_id`."""
        if self._run_id is None:
            try:
                info = await self.aclient.execute_command("INFO")
            except Exception as exc:
                raise self._error(exc) from exc
            self._run_id = server_identity(info)
        return self._run_id

    def _seed(self) -> str:
        # The scripts add a key's position (< 2**20) to this; keep the sum below 2**52.
        return str(new_generation(self._rng) - (1 << 20))

    def _error(self, exc: BaseException, kind: type[BackendError] = BackendError) -> BackendError:
        if isinstance(exc, BackendError):
            return exc
        return kind(f"redis: {type(exc).__name__}: {exc}")

    def _run(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[Any],
        kind: type[BackendError] = BackendError,
    ) -> Any:
        # EVALSHA straight through execute_command: redis-py's Script wrapper costs a few
        # microseconds per call on the hot path. NOSCRIPT (a restarted or flushed server)
        # loads the script and tries once more.
        if self._checks_master:
            self._before_script()
        if kind is InvalidationError and (need := self._wait_for()) > 0:
            return self._run_confirmed(name, keys, args, need)
        client = self.client
        try:
            try:
                return client.execute_command("EVALSHA", _SHA[name], len(keys), *keys, *args)
            except _redis().exceptions.NoScriptError:
                client.script_load(getattr(_scripts, name))
                return client.execute_command("EVALSHA", _SHA[name], len(keys), *keys, *args)
        except Exception as exc:
            raise self._error(exc, kind) from exc

    async def _arun(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[Any],
        kind: type[BackendError] = BackendError,
    ) -> Any:
        if self._async_stale:
            await self._aprepare()
        if self._checks_master:
            self._before_script()  # a blocking round trip, only when a master watch lags
        if kind is InvalidationError and (need := self._wait_for()) > 0:
            return await self._arun_confirmed(name, keys, args, need)
        client = self.aclient
        try:
            try:
                return await client.execute_command("EVALSHA", _SHA[name], len(keys), *keys, *args)
            except _redis().exceptions.NoScriptError:
                await client.script_load(getattr(_scripts, name))
                return await client.execute_command("EVALSHA", _SHA[name], len(keys), *keys, *args)
        except Exception as exc:
            raise self._error(exc, kind) from exc

    def _before_script(self) -> None:
        """Run before each script when ``_checks_master`` (Sentinel: a recent master answer)."""

    def _wait_for(self, node: Any = None) -> int:
        """Replicas an invalidation on ``node`` (None: the one server) must reach first."""
        if self.wait_replicas == "auto":
            return min(1, self._replicas_of(node))
        return int(self.wait_replicas)

    def _replicas_of(self, node: Any) -> int:
        """Replicas of ``node`` that could be promoted (subclasses that know the topology)."""
        return 1

    def _run_confirmed(self, name: str, keys: Sequence[str], args: Sequence[Any], need: int) -> Any:
        # An invalidation followed by WAIT on the same connection (a pipeline): acknowledged
        # only once a replica has it.
        client = self.client
        try:
            for attempt in (0, 1):
                try:
                    with client.pipeline(transaction=False) as p:
                        p.execute_command("EVALSHA", _SHA[name], len(keys), *keys, *args)
                        for ms in self._wait_slices:
                            p.execute_command("WAIT", need, ms)
                        reply, *acked = p.execute()
                    self._confirmed_by(max(acked), need)
                    return reply
                except _redis().exceptions.NoScriptError:
                    if attempt:
                        raise
                    client.script_load(getattr(_scripts, name))
        except Exception as exc:
            raise self._error(exc, InvalidationError) from exc

    async def _arun_confirmed(
        self, name: str, keys: Sequence[str], args: Sequence[Any], need: int
    ) -> Any:
        client = self.aclient
        try:
            for attempt in (0, 1):
                try:
                    async with client.pipeline(transaction=False) as p:
                        p.execute_command("EVALSHA", _SHA[name], len(keys), *keys, *args)
                        for ms in self._wait_slices:
                            p.execute_command("WAIT", need, ms)
                        reply, *acked = await p.execute()
                    self._confirmed_by(max(acked), need)
                    return reply
                except _redis().exceptions.NoScriptError:
                    if attempt:
                        raise
                    await client.script_load(getattr(_scripts, name))
        except Exception as exc:
            raise self._error(exc, InvalidationError) from exc

    def _confirmed_by(self, acked: Any, need: int) -> None:
        if int(acked) < need:
            raise InvalidationError(
                f"redis: the invalidation reached {acked} of {need} replica(s) within "
                f"{self._wait_ms} ms, so a failover could lose it: not confirmed (a replica "
                "lagging under load: raise wait_timeout; no replicas: wait_replicas='auto')"
            )

    async def _aprepare(self) -> None:
        """Run before an async command while ``_async_stale`` (Sentinel: drop connections)."""

    # ------------------------------------------------------------------ Backend API

    def _read_args(self, run_id: str, gens: Sequence[str]) -> list[str]:
        return [run_id, self._gen_ttl_ms, self._seed()]

    @staticmethod
    def _read_result(reply: Any, gens: Sequence[str]) -> Read:
        kind = reply[0]
        if kind == 0:
            return Read(None, tuple(map(int, reply[1:])))
        try:
            entry = _entry_from(tuple(gens) if kind == 1 else reply[4], *reply[1:4])
        except (ValueError, TypeError, UnicodeDecodeError):
            # Garbage someone wrote into the entry: a miss. (On a kind-1 reply the script
            # checked that the stamps are exactly the current generations.)
            current = reply[1].split(b",") if kind == 1 else reply[5:]
            return Read(None, tuple(map(int, current)))
        # On a hit the entry's stamps are the current generations of its names; when those
        # are the names asked for, they are also the generations asked for.
        if kind == 1:
            return Read(entry, entry.stamps)
        return Read(entry, tuple(map(int, reply[5:])))

    def read(self, key: str, gens: Sequence[str]) -> Read:
        """See :meth:`Backend.read` (one EVALSHA)."""
        while True:
            run_id = self.run_id()
            reply = self._run("READ", [key, *gens], self._read_args(run_id, gens))
            # If the connection was re-made during the call (a retry after a restart), the
            # script ran on a new server with the old run id, which an entry restored from an
            # old snapshot also carries: ask again with the run id just learned.
            if self._run_id == run_id:
                return self._read_result(reply, gens)

    async def aread(self, key: str, gens: Sequence[str]) -> Read:
        """See :meth:`Backend.read`."""
        while True:
            run_id = await self.arun_id()
            reply = await self._arun("READ", [key, *gens], self._read_args(run_id, gens))
            if self._run_id == run_id:
                return self._read_result(reply, gens)

    def lease_key(self, key: str) -> str:
        """The single-flight lease key of an entry key."""
        return self.namespace + ":l:" + key

    def _write_args(
        self, run_id: str, key: str, entry: Entry, retain: float | None, token: str
    ) -> list[Any]:
        return [
            run_id,
            "\n".join(entry.names),
            ",".join(map(str, entry.stamps)),
            _meta(entry),
            entry.payload,
            _retain_ms(retain),
            self.lease_key(key),
            token,
            self.fill_channel,
        ]

    def write(self, key: str, entry: Entry, retain: float | None, token: str = "") -> bool:
        """See :meth:`Backend.write`; also ends the lease ``token`` and wakes waiters."""
        args = self._write_args(self.run_id(), key, entry, retain, token)
        return bool(self._run("WRITE", [key, *entry.names], args))

    async def awrite(self, key: str, entry: Entry, retain: float | None, token: str = "") -> bool:
        """See :meth:`Backend.write`."""
        args = self._write_args(await self.arun_id(), key, entry, retain, token)
        return bool(await self._arun("WRITE", [key, *entry.names], args))

    def _wt_args(
        self, run_id: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> list[Any]:
        return [
            run_id,
            "\n".join(entry.names),
            ",".join(map(str, expected)),
            _meta(entry),
            entry.payload,
            _retain_ms(retain),
            self.inv_channel,
            self._gen_ttl_ms,
            self._seed(),
        ]

    def write_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> bool:
        """See :meth:`Backend.write_through`."""
        args = self._wt_args(self.run_id(), entry, expected, retain)
        return bool(self._run("WRITE_THROUGH", [key, *entry.names], args, InvalidationError))

    async def awrite_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> bool:
        """See :meth:`Backend.write_through`."""
        args = self._wt_args(await self.arun_id(), entry, expected, retain)
        return bool(await self._arun("WRITE_THROUGH", [key, *entry.names], args, InvalidationError))

    def _inv_args(self, gens: Sequence[str]) -> list[str]:
        return [self.inv_channel, self._gen_ttl_ms, self._seed()]

    def invalidate(self, gens: Sequence[str]) -> tuple[int, ...]:
        """See :meth:`Backend.invalidate` (one EVALSHA: INCR each, then PUBLISH)."""
        reply = self._run("INVALIDATE", list(gens), self._inv_args(gens), InvalidationError)
        return tuple(int(v) for v in reply)

    async def ainvalidate(self, gens: Sequence[str]) -> tuple[int, ...]:
        """See :meth:`Backend.invalidate`."""
        reply = await self._arun("INVALIDATE", list(gens), self._inv_args(gens), InvalidationError)
        return tuple(int(v) for v in reply)

    def current(self, gens: Sequence[str]) -> tuple[int, ...]:
        """See :meth:`Backend.current`."""
        reply = self._run("CURRENT", list(gens), [self._gen_ttl_ms, self._seed()])
        return tuple(int(v) for v in reply)

    async def acurrent(self, gens: Sequence[str]) -> tuple[int, ...]:
        """See :meth:`Backend.current`."""
        reply = await self._arun("CURRENT", list(gens), [self._gen_ttl_ms, self._seed()])
        return tuple(int(v) for v in reply)

    def get_entry(self, key: str) -> Entry | None:
        """See :meth:`Backend.get_entry`."""
        try:
            e = self.client.hmget(key, "n", "s", "m", "p")
        except Exception as exc:
            raise self._error(exc) from exc
        return _entry_from(e[0], e[1], e[2], e[3]) if e[3] is not None else None

    def delete(self, key: str) -> bool:
        """See :meth:`Backend.delete`."""
        try:
            return bool(self.client.delete(key))
        except Exception as exc:
            raise self._error(exc) from exc

    async def adelete(self, key: str) -> bool:
        """See :meth:`Backend.delete`."""
        try:
            return bool(await self.aclient.delete(key))
        except Exception as exc:
            raise self._error(exc) from exc

    # ------------------------------------------------------------------ leases

    def lease(self, key: str, ttl: float) -> tuple[str | None, float]:
        """Try to become the one process filling ``key``: (token, 0) or (None, seconds left)."""
        token = secrets.token_hex(8)
        lk = self.lease_key(key)
        try:
            with self.client.pipeline(transaction=False) as p:
                p.set(lk, token, nx=True, px=max(int(ttl * 1000), 1))
                p.pttl(lk)
                got, left = p.execute()
        except Exception as exc:
            raise self._error(exc) from exc
        return (token, 0.0) if got else (None, max(left, 0) / 1000)

    async def alease(self, key: str, ttl: float) -> tuple[str | None, float]:
        """Async :meth:`lease`."""
        token = secrets.token_hex(8)
        lk = self.lease_key(key)
        try:
            async with self.aclient.pipeline(transaction=False) as p:
                p.set(lk, token, nx=True, px=max(int(ttl * 1000), 1))
                p.pttl(lk)
                got, left = await p.execute()
        except Exception as exc:
            raise self._error(exc) from exc
        return (token, 0.0) if got else (None, max(left, 0) / 1000)

    def release(self, key: str, token: str, error: str) -> None:
        """Give a lease back without a fill; waiters get ``error`` ("" = just retry)."""
        self._run(
            "RELEASE",
            [self.lease_key(key)],
            [token, self.fill_channel, _release_message(key, error)],
        )

    async def arelease(self, key: str, token: str, error: str) -> None:
        """Async :meth:`release`."""
        await self._arun(
            "RELEASE",
            [self.lease_key(key)],
            [token, self.fill_channel, _release_message(key, error)],
        )

    def wait_fill(
        self, key: str, timeout: float, recheck: Callable[[], bool]
    ) -> tuple[str, str] | None:
        """Block until another process fills ``key`` (or fails), or ``timeout`` passes.

        The fill notice on the channel is the normal wake-up. ``recheck`` (a read) runs after
        registering, so a notice sent before the registration is not missed, and again now
        and then: a notice published while the channel was (re)connecting is lost, and the
        waiter must not sleep out the whole lease for it.
        """
        listener = self.ensure_listener()
        done = threading.Event()
        outcome: list[tuple[str, str]] = []

        def wake(status: str, message: str) -> None:
            outcome.append((status, message))
            done.set()

        self._waiters.add(key, wake)
        try:
            deadline = time.monotonic() + timeout
            while not recheck():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if done.wait(min(left, _recheck_every(listener))):
                    return outcome[0]
            return None
        finally:
            self._waiters.remove(key, wake)

    async def await_fill(
        self, key: str, timeout: float, recheck: Callable[[], Awaitable[bool]]
    ) -> tuple[str, str] | None:
        """Async :meth:`wait_fill`: the listener thread wakes the task through its loop."""
        listener = self.ensure_listener()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[str, str]] = loop.create_future()

        def wake(status: str, message: str) -> None:
            def settle() -> None:
                if not fut.done():
                    fut.set_result((status, message))

            loop.call_soon_threadsafe(settle)

        self._waiters.add(key, wake)
        try:
            deadline = time.monotonic() + timeout
            while not await recheck():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    return await asyncio.wait_for(
                        asyncio.shield(fut), min(left, _recheck_every(listener))
                    )
                except TimeoutError:
                    continue
            return None
        finally:
            self._waiters.remove(key, wake)

    # ------------------------------------------------------------------ channel

    def subscribe(self, listener: InvalidationListener) -> None:
        """See :meth:`Backend.subscribe`; starts the channel thread."""
        self._listeners.append(listener)
        self.ensure_listener()

    def on_channel(self, *, alive: Callable[[float], None], reset: Callable[[], None]) -> None:
        """Hooks for L1: ``alive(t)`` on each proof of liveness, ``reset()`` when trust is lost."""
        self._alive_hooks.append(alive)
        self._reset_hooks.append(reset)

    def ensure_listener(self) -> Listener | Fanout:
        """Start the pub/sub listener thread if it is not running."""
        if self._listener is None:
            with self._lock:
                if self._listener is None:
                    listener = self._new_listener()
                    listener.start()
                    self._listener = listener
        return self._listener

    def _new_listener(self) -> Listener | Fanout:
        """The channel listener of this backend (one connection to the one server)."""
        return Listener(
            self._make_pubsub,
            invalidations=self.inv_channel,
            fills=self.fill_channel,
            ping_interval=self._ping_interval,
            on_invalidate=self._dispatch_invalidation,
            on_fill=self._waiters.notify,
            on_alive=self._dispatch_alive,
            on_subscribed=self._dispatch_reset,
            on_lost=self._dispatch_reset,
        )

    @property
    def listener(self) -> Listener | Fanout | None:
        """The running channel listener, if any."""
        return self._listener

    def _make_pubsub(self) -> Any:
        # The subscribed connection must not time out between messages: reads on it are
        # bounded by get_message(timeout=...) instead.
        redis = _redis()
        kwargs = dict(self.client.connection_pool.connection_kwargs)
        kwargs["socket_timeout"] = None
        kwargs.pop("redis_connect_func", None)
        kwargs.pop("retry", None)
        cls = self.client.connection_pool.connection_class
        pool = redis.ConnectionPool(connection_class=cls, max_connections=1, **kwargs)
        return redis.Redis(connection_pool=pool).pubsub(ignore_subscribe_messages=False)

    def _dispatch_invalidation(self, names: Sequence[str], values: Sequence[int]) -> None:
        for listener in self._listeners:
            listener(names, values)

    def _dispatch_alive(self, t: float) -> None:
        for hook in self._alive_hooks:
            hook(t)

    def _dispatch_reset(self) -> None:
        for hook in self._reset_hooks:
            hook()

    def after_fork(self) -> None:
        """In a forked child (gunicorn ``--preload``, Celery prefork, multiprocessing).

        The channel thread did not survive the fork, and a connection must never be shared
        with the parent (replies would go to whichever process reads first). redis-py's sync
        pools notice the new pid by themselves; asyncio pools do not, so theirs are dropped
        without closing (closing would shut the parent's sockets). The channel is started
        again by :meth:`ensure_listener` on first use; until its first proof L1 is not trusted.
        """
        self._lock = threading.Lock()
        self._waiters = _Waiters()
        self._listener = None
        if self._aclient is not None:
            if self._own_aclient:
                self._aclient = None
            else:
                pool = getattr(self._aclient, "connection_pool", None)
                if pool is not None:
                    pool.reset()
        self._dispatch_reset()

    def close(self) -> None:
        """Stop the channel and disconnect the clients we created."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if self._client is not None and self.url is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()
        if self._aclient is not None and self.url is not None:
            await self._aclient.aclose()


def _recheck_every(listener: Listener | Fanout) -> float:
    # Seconds between safety re-reads while waiting for a fill: rare while the channel is
    # up (its notice wakes us), frequent while it is connecting and notices can be lost.
    return 0.25 if listener.connected.is_set() else 0.02


def _release_message(key: str, error: str) -> str:
    # "err": the loader raised, waiters raise RemoteLoaderError; "skip": nothing was stored
    # (the value was not cacheable, or the refresh gave up), waiters read and lease again.
    return f"err\n{key}\n{error}" if error else f"skip\n{key}\n"
