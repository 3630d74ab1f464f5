"""The Redis backend: one round trip per warm read, atomic invalidation, leases, a channel.

What it adds to the operations of :class:`~freshlink.backends._single.SingleServer`: clients
made from a ``redis://`` URL, the server identity every connection learns, loading the Lua
scripts (``_scripts``) and a channel on the one server. redis-py is imported lazily.
"""

from __future__ import annotations

from typing import Any

from . import _lean
from ._forksafe import track
from ._identity import hook_identity, server_identity
from ._redis_base import DEFAULT_CLIENT_OPTIONS, _redis, _retry
from ._single import BUMPS, SHA, SOURCE, SingleServer
from ._warmup import Warmup
from ._wire import (
    Call,
    pipelined,
)
from .channel import Listener

__all__ = ["DEFAULT_CLIENT_OPTIONS", "RedisBackend", "server_identity"]


def _evalsha(call: Call) -> tuple[Any, ...]:
    # EVALSHA straight through the connection (_lean): redis-py's Script wrapper and
    # execute_command each cost a few microseconds per call on the hot path.
    return ("EVALSHA", SHA[call.name], len(call.keys), *call.keys, *call.args)


class RedisBackend(SingleServer):
    """Entries and generations in Redis, shared by every process that uses the same server."""

    def __init__(
        self, client: Any = None, aclient: Any = None, *, warm_connections: int = 8, **options: Any
    ) -> None:
        #: Opens ``warm_connections`` in each client made here, ahead of need.
        self.warmup = Warmup(warm_connections)
        super().__init__(client, aclient, **options)
        self._own_client = client is None
        self._run_id = None
        self._lanes = _lean.Lanes()  # the hot commands' way to the clients (see _lean)
        if client is not None:
            hook_identity(client, self._on_connect, self._learn)
        if aclient is not None:
            hook_identity(aclient, self._aon_connect, self._learn)

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

    def observe_commands(self, on: bool) -> None:
        """:meth:`Backend.observe_commands`: the hot commands skip redis-py's
        ``execute_command`` only while off (see _lean)."""
        self._lanes.observe(on)

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

    # ------------------------------------------------------------------ scripts

    def _script(self, op: Call | list[Call]) -> Any:
        # NOSCRIPT (a restarted or flushed server) loads the script and tries once more.
        call = op[0] if isinstance(op, list) else op  # one server: a round is one script
        client = self.client
        need = self._wait_for() if call.name in BUMPS else 0
        for attempt in (0, 1):
            try:
                if not need:
                    return self._lanes.sync(self.client).call(_evalsha(call))
                replies = self._confirming(client, call, need).execute()
                return self._after_waits(replies, [need])[0]
            except _redis().exceptions.NoScriptError:
                if attempt:
                    raise
                client.script_load(SOURCE[call.name])
        raise AssertionError("unreachable")

    async def _ascript(self, op: Call | list[Call]) -> Any:
        call = op[0] if isinstance(op, list) else op
        client = self.aclient
        need = self._wait_for() if call.name in BUMPS else 0
        for attempt in (0, 1):
            try:
                if not need:
                    return await self._lanes.asyncio(self.aclient).call(_evalsha(call))
                replies = await self._confirming(client, call, need).execute()
                return self._after_waits(replies, [need])[0]
            except _redis().exceptions.NoScriptError:
                if attempt:
                    raise
                await client.script_load(SOURCE[call.name])
        raise AssertionError("unreachable")

    def _confirming(self, client: Any, call: Call, need: int) -> Any:
        # An invalidation followed by WAIT on the same connection (a pipeline): acknowledged
        # only once a replica has it.
        return pipelined(client, [_evalsha(call), *self._waits(need)])

    def _replicas_of(self, node: Any) -> int:
        """A single server is assumed to have a replica (``wait_replicas="auto"``: wait for one)."""
        return 1

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
