"""The Redis backend: one round trip per warm read, atomic invalidation, leases, a channel.

What it adds to :class:`~freshlink.backends._redis_base.RedisBase`: clients made from a
``redis://`` URL, the server identity every connection learns, the single-server Lua scripts
(``_scripts``) and a channel on the one server. redis-py is imported lazily.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import BackendError
from . import _lean, _scripts
from ._forksafe import track
from ._redis_base import DEFAULT_CLIENT_OPTIONS, RedisBase, _redis, _retry
from ._warmup import Warmup
from ._wire import (
    Call,
    Commands,
    Steps,
    encode_meta,
    pipelined,
    read_reply,
    retain_ms,
    took_lease,
)
from .base import Entry, Read
from .channel import Listener

__all__ = ["DEFAULT_CLIENT_OPTIONS", "RedisBackend", "server_identity"]

#: The source and SHA1 (as EVALSHA names it) of each script.
_SOURCE: dict[str, str] = {name: getattr(_scripts, name) for name in _scripts.__all__}
_SHA = {
    name: hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    for name, source in _SOURCE.items()
}
#: The scripts that increment generations: confirmed by replicas (``WAIT``) when asked to.
_BUMPS = frozenset({"INVALIDATE", "WRITE_THROUGH"})
_READ_SHA = _SHA["READ"]


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


def _evalsha(call: Call) -> tuple[Any, ...]:
    # EVALSHA straight through the connection (_lean): redis-py's Script wrapper and
    # execute_command each cost a few microseconds per call on the hot path.
    return ("EVALSHA", _SHA[call.name], len(call.keys), *call.keys, *call.args)


def _hook(client: Any, hook: Callable[..., Any], learn: Callable[[Any], None]) -> None:
    """Make the future connections of a client passed in by the user learn the server's
    identity too (``learn`` gets their ``INFO``), after the user's own connect hook if it has
    one (that hook runs ``on_connect`` itself)."""
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
            learn(await conn.read_response())

        acomposed._freshlink = True  # type: ignore[attr-defined]
        kwargs["redis_connect_func"] = acomposed
        return

    def composed(conn: Any) -> None:
        theirs(conn)
        conn.send_command("INFO")
        learn(conn.read_response())

    composed._freshlink = True  # type: ignore[attr-defined]
    kwargs["redis_connect_func"] = composed


class RedisBackend(RedisBase):
    """Entries and generations in Redis, shared by every process that uses the same server."""

    def __init__(
        self, client: Any = None, aclient: Any = None, *, warm_connections: int = 8, **options: Any
    ) -> None:
        #: Opens ``warm_connections`` in each client made here, ahead of need.
        self.warmup = Warmup(warm_connections)
        super().__init__(client, aclient, **options)
        self._own_client = client is None
        self._run_id: str | None = None
        self._lease_ttl = -1.0
        self._lease_ms_str = ""
        self._lanes = _lean.Lanes()  # the hot commands' way to the clients (see _lean)
        if client is not None:
            _hook(client, self._on_connect, self._learn)
        if aclient is not None:
            _hook(aclient, self._aon_connect, self._learn)

    # ------------------------------------------------------------------ clients

    def _on_connect(self, conn: Any) -> None:
        # Every new connection learns the server's run id. Entries carry the run id they were
        # written under, so after a restart (even one restoring an older snapshot, whose
        # generations are older than invalidations already acknowledged) or a failover to a
        # replica that missed writes, nothing written before is ever valid again.
        conn.on_connect()
        conn.send_command("INFO")
        self._run_id = server_identity(conn.read_response())

    def _learn(self, info: Any) -> None:
        self._run_id = server_identity(info)

    async def _aon_connect(self, conn: Any) -> None:
        await conn.on_connect()
        await conn.send_command("INFO")
        self._run_id = server_identity(await conn.read_response())

    def _client_kwargs(self, other: Any, *drop: str) -> dict[str, Any]:
        """The connection settings of the client of the other kind, for one made alongside."""
        kwargs = dict(other.connection_pool.connection_kwargs)
        for name in ("redis_connect_func", *drop):
            kwargs.pop(name, None)
        return kwargs

    @property
    def client(self) -> Any:
        """The sync redis-py client (created from the URL on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    redis = _redis()
                    if self.url is None:
                        kwargs = self._client_kwargs(self._aclient)
                        self._client = redis.Redis(**kwargs, redis_connect_func=self._on_connect)
                    else:
                        self._client = redis.Redis.from_url(
                            self.url,
                            retry=_retry(),
                            redis_connect_func=self._on_connect,
                            **self._options,
                        )
                    track(self._client)
                    self.warmup.sync(self._client.connection_pool)
        return self._client

    @property
    def aclient(self) -> Any:
        """The asyncio redis-py client (created from the URL on first use)."""
        if self._aclient is None:
            redis = _redis("redis.asyncio")
            if self.url is None:
                kwargs = self._client_kwargs(self._client, "retry")
                self._aclient = redis.Redis(**kwargs, redis_connect_func=self._aon_connect)
            else:
                self._aclient = redis.Redis.from_url(
                    self.url,
                    retry=_retry(asyncio=True),
                    redis_connect_func=self._aon_connect,
                    **self._options,
                )
            self.warmup.aio(self._aclient.connection_pool)
        return self._aclient

    def after_fork(self) -> None:
        """See :meth:`RedisBase.after_fork`; a sync client made here is made (and warmed) again.

        The parent's connections cannot serve the child, so its pool would open every one of
        them on demand, on the child's first requests.
        """
        self.warmup.after_fork()
        if self._own_client:
            self._client = None
        super().after_fork()

    def close(self) -> None:
        """See :meth:`RedisBase.close`; a warm-up under way ends first (it holds connections),
        and the connections the hot path kept go back to the pool."""
        self.warmup.join()
        self._lanes.close()
        super().close()

    async def aclose(self) -> None:
        """See :meth:`RedisBase.aclose`; an async warm-up under way is stopped first, and the
        asyncio connections the hot path kept go back to the pool."""
        await self.warmup.astop()
        await self._lanes.aclose()
        await super().aclose()

    def _identity(self) -> Steps[str]:
        # Asked for only when no connection has told it yet (a client made before the hook).
        if self._run_id is None:
            (info,) = yield Commands((("INFO",),))
            self._run_id = server_identity(info)
        return self._run_id

    def run_id(self) -> str:
        """The run id of the server we are connected to (fetched if not known yet)."""
        return self._drive(self._identity())

    async def arun_id(self) -> str:
        """Async :meth:`run_id`."""
        return await self._adrive(self._identity())

    # ------------------------------------------------------------------ scripts

    def _script(self, op: Call | list[Call]) -> Any:
        # NOSCRIPT (a restarted or flushed server) loads the script and tries once more.
        call = op[0] if isinstance(op, list) else op  # one server: a round is one script
        client = self.client
        need = self._wait_for() if call.name in _BUMPS else 0
        for attempt in (0, 1):
            try:
                if not need:
                    return self._lanes.sync(self.client).call(_evalsha(call))
                replies = self._confirming(client, call, need).execute()
                return self._after_waits(replies, [need])[0]
            except _redis().exceptions.NoScriptError:
                if attempt:
                    raise
                client.script_load(_SOURCE[call.name])
        raise AssertionError("unreachable")

    async def _ascript(self, op: Call | list[Call]) -> Any:
        call = op[0] if isinstance(op, list) else op
        client = self.aclient
        need = self._wait_for() if call.name in _BUMPS else 0
        for attempt in (0, 1):
            try:
                if not need:
                    return await self._lanes.asyncio(self.aclient).call(_evalsha(call))
                replies = await self._confirming(client, call, need).execute()
                return self._after_waits(replies, [need])[0]
            except _redis().exceptions.NoScriptError:
                if attempt:
                    raise
                await client.script_load(_SOURCE[call.name])
        raise AssertionError("unreachable")

    def _confirming(self, client: Any, call: Call, need: int) -> Any:
        # An invalidation followed by WAIT on the same connection (a pipeline): acknowledged
        # only once a replica has it.
        return pipelined(client, [_evalsha(call), *self._waits(need)])

    def _replicas_of(self, node: Any) -> int:
        """A single server is assumed to have a replica (``wait_replicas="auto"``: wait for one)."""
        return 1

    # ------------------------------------------------------------------ operations

    def _read(
        self,
        key: str,
        names: Sequence[str],
        lease_ms: str = "",
        token: str = "",
        held: bool = False,
    ) -> Steps[Read]:
        """One EVALSHA (which also takes the lease on a miss when ``lease_ms`` is given).

        A read asked again (below, or after the direct read) keeps its lease token: the first
        try may have taken the lease (``held``), and a new token would then wait for its own
        fill; if the read it is asked again for is a hit, that lease is given back.
        """
        while True:
            run_id = self._run_id or (yield from self._identity())
            args = self._direct(key, names, run_id, lease_ms, token)
            token = args[-1]
            reply = yield Call("READ", list(args[3 : len(names) + 5]), list(args[len(names) + 5 :]))
            # If the connection was re-made during the call (a retry after a restart), the
            # script ran on a new server with the old run id, which an entry restored from an
            # old snapshot also carries: ask again with the run id just learned.
            if self._run_id == run_id:
                read = read_reply(reply, names, token)
                if held and read.token is None:
                    yield from self._release(key, token, "")
                return read
            held = held or took_lease(reply)

    # The warm read is the hot path: when the run id is known and does not change during the
    # call, its one script answers it as _read would, so neither the generator nor a request
    # object is made (together about 0.5 µs of a hit's CPU). Anything else (an unknown run id,
    # NOSCRIPT, a backend that checks something before each request) is left to _read.
    _direct_reads = True

    def read(self, key: str, names: Sequence[str]) -> Read:
        """See :meth:`Backend.read` (one EVALSHA)."""
        return self._fetch(key, names, "")

    async def aread(self, key: str, names: Sequence[str]) -> Read:
        """See :meth:`Backend.read` (one EVALSHA)."""
        return await self._afetch(key, names, "")

    def read_lease(self, key: str, names: Sequence[str], ttl: float) -> Read:
        """See :meth:`Backend.read_lease`: the same one EVALSHA as :meth:`read`."""
        return self._fetch(key, names, self._lease_ms(ttl))

    async def aread_lease(self, key: str, names: Sequence[str], ttl: float) -> Read:
        """See :meth:`Backend.read_lease`."""
        return await self._afetch(key, names, self._lease_ms(ttl))

    def _lease_ms(self, ttl: float) -> str:
        # Called on every read of the hot path with the cache's one lease ttl: remember it.
        if ttl != self._lease_ttl:
            self._lease_ttl, self._lease_ms_str = ttl, str(max(int(ttl * 1000), 1))
        return self._lease_ms_str

    def _fetch(self, key: str, names: Sequence[str], lease_ms: str) -> Read:
        run_id = self._run_id
        if run_id is not None and self._direct_reads:
            args = self._direct(key, names, run_id, lease_ms)
            try:
                reply = self._lanes.sync(self.client).call(args)
            except Exception as exc:
                self._direct_failed(exc)
            else:
                if self._run_id == run_id:
                    return read_reply(reply, names, args[-1])
                return self._drive(self._read(key, names, lease_ms, args[-1], took_lease(reply)))
            return self._drive(self._read(key, names, lease_ms, args[-1]))
        return self._drive(self._read(key, names, lease_ms))

    async def _afetch(self, key: str, names: Sequence[str], lease_ms: str) -> Read:
        run_id = self._run_id
        if run_id is None or not self._direct_reads:
            return await self._adrive(self._read(key, names, lease_ms))
        args = self._direct(key, names, run_id, lease_ms)
        try:
            reply = await self._lanes.asyncio(self.aclient).call(args)
        except Exception as exc:
            self._direct_failed(exc)
            reply = None
        if reply is None or self._run_id != run_id:
            held = reply is not None and took_lease(reply)
            return await self._adrive(self._read(key, names, lease_ms, args[-1], held))
        return read_reply(reply, names, args[-1])

    def _direct(
        self, key: str, names: Sequence[str], run_id: str, lease_ms: str, token: str = ""
    ) -> tuple[Any, ...]:
        """The READ script's EVALSHA; the last argument is the lease token (the seed if new:
        both are random per call, and one random draw is cheaper than two)."""
        seed = self._seed()
        return (
            "EVALSHA", _READ_SHA, len(names) + 2, key, self.lease_key(key), *names,
            run_id, self._gen_ttl_ms, seed, lease_ms, token or seed,
        )  # fmt: skip

    def _direct_failed(self, exc: Exception) -> None:
        """NOSCRIPT is left to _read (which loads the script); anything else is the backend's."""
        if not isinstance(exc, _redis().exceptions.NoScriptError):
            raise self._error(exc) from exc

    def _write(self, key: str, entry: Entry, retain: float | None, token: str) -> Steps[bool]:
        run_id = self._run_id or (yield from self._identity())
        plan = self.kept.plan(entry.names, retain, run_id)  # which generations to extend
        args = [
            run_id,
            "\n".join(entry.names),
            ",".join(map(str, entry.stamps)),
            encode_meta(entry),
            entry.payload,
            retain_ms(retain),
            self.lease_key(key),
            token,
            self.keyspace.fills,
            *plan[:2],
        ]
        return plan[2](bool((yield Call("WRITE", [key, *entry.names], args))))

    def _write_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> Steps[bool]:
        run_id = self._run_id or (yield from self._identity())
        args = [
            run_id,
            "\n".join(entry.names),
            ",".join(map(str, expected)),
            encode_meta(entry),
            entry.payload,
            retain_ms(retain),
            self.keyspace.invalidations,
            self._gen_ttl_ms,
            self._seed(),
        ]
        return bool((yield Call("WRITE_THROUGH", [key, *entry.names], args)))

    def _invalidate(self, names: Sequence[str]) -> Steps[tuple[int, ...]]:
        """One EVALSHA: INCR each, then PUBLISH."""
        args = [self.keyspace.invalidations, self._gen_ttl_ms, self._seed()]
        reply = yield Call("INVALIDATE", list(names), args)
        return tuple(int(v) for v in reply)

    def _current(self, names: Sequence[str]) -> Steps[tuple[int, ...]]:
        reply = yield Call("CURRENT", list(names), [self._gen_ttl_ms, self._seed()])
        return tuple(int(v) for v in reply)

    def _stored(self, key: str) -> str:
        return key

    def lease_key(self, key: str) -> str:
        """The single-flight lease key of an entry key."""
        return self.keyspace.lease(key)

    # ------------------------------------------------------------------ channel

    def _new_listener(self) -> Listener:
        """The channel listener of this backend (one connection to the one server)."""
        reset = self._dispatch_reset
        return Listener(
            self._make_pubsub, **self._channel_options(), on_subscribed=reset, on_lost=reset
        )

    def _make_pubsub(self) -> Any:
        # The subscribed connection must not time out between messages: reads on it are
        # bounded by get_message(timeout=...) instead.
        redis = _redis()
        if self._client is None and self.url is not None:
            # An asyncio app has no sync client: making one only for its settings would also
            # warm a pool nothing uses.
            options = {**self._options, "socket_timeout": None}
            pool = redis.ConnectionPool.from_url(self.url, max_connections=1, **options)
            return redis.Redis(connection_pool=pool).pubsub(ignore_subscribe_messages=False)
        kwargs = self._client_kwargs(self.client, "retry")
        kwargs["socket_timeout"] = None
        cls = self.client.connection_pool.connection_class
        pool = redis.ConnectionPool(connection_class=cls, max_connections=1, **kwargs)
        return redis.Redis(connection_pool=pool).pubsub(ignore_subscribe_messages=False)
