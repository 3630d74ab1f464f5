"""The Redis backend behind Sentinel: the master is found through the sentinels.

Everything else is the single-server backend. What makes it safe across a failover:

* every connection learns the server's identity (run id and replication id), and entries carry
  the identity they were written under, so nothing written before a promotion is valid after
  it; a read that spans a reconnect is repeated with the new identity;
* a master watch asks the sentinels which server is the master every ``check_interval``; when
  the answer changes, connections are dropped (new ones go to the new master), the channel
  resubscribes there and L1 is emptied, and L1 trust never extends past the last answer;
* an invalidation is acknowledged only once a replica has it (``WAIT``, ``wait_replicas``): an
  old master that Sentinel has not yet demoted has lost its replica, so an invalidation sent
  to it is reported (``InvalidationError``) instead of silently lost.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from ..errors import ConfigurationError
from ._forksafe import track
from ._redis_base import _redis, _retry
from ._wire import Op
from .channel import Channel
from .redis import RedisBackend
from .urls import parse_sentinel_url, pop_wait_options

__all__ = ["SentinelBackend", "parse_sentinel_url"]

logger = logging.getLogger("freshlink")


def is_sentinel_managed(client: Any) -> bool:
    """True for a redis-py client made by ``Sentinel.master_for`` (sync or asyncio)."""
    pool = getattr(client, "connection_pool", None)
    return hasattr(pool, "sentinel_manager") and hasattr(pool, "service_name")


def _from_client(client: Any) -> dict[str, Any]:
    """The sentinels, service and connection options of a Sentinel-managed client."""
    if not is_sentinel_managed(client):
        raise ConfigurationError(
            f"expected a client made by Sentinel.master_for, got {type(client).__name__}"
        )
    pool = client.connection_pool
    sentinels = [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in pool.sentinel_manager.sentinels
    ]
    options = {k: v for k, v in pool.connection_kwargs.items() if k in _FROM_CLIENT}
    return {"sentinels": sentinels, "service": pool.service_name, "options": options}


#: Settings the channel's own client takes from a Sentinel-managed client passed in.
_FROM_CLIENT = frozenset({"username", "password", "db", "ssl", "ssl_ca_certs", "ssl_cert_reqs"})


class SentinelBackend(RedisBackend):
    """The Redis backend on the master a set of Sentinels points to.

    A subclass of :class:`RedisBackend`, not a sibling: it is the same single-master Redis
    (the same scripts and operations, the same server identity learnt by every connection);
    only where its connections go is decided by the sentinels, and it watches them.
    """

    #: Every request goes through _perform, which checks the master first.
    _direct_reads = False

    def __init__(
        self,
        client: Any = None,
        aclient: Any = None,
        *,
        url: str | None = None,
        wait_replicas: int | str = "auto",
        check_interval: float = 0.05,
        failover_fence: float = 2.5,
        **kw: Any,
    ) -> None:
        if not failover_fence > 0:
            raise ConfigurationError(f"failover_fence must be > 0 seconds, got {failover_fence!r}")
        if not check_interval > 0:
            raise ConfigurationError(f"check_interval must be > 0 seconds, got {check_interval!r}")
        given = client if client is not None else aclient
        if url is not None:
            sentinel_url = parse_sentinel_url(url)
        elif given is not None:
            sentinel_url = _from_client(given)
        else:
            raise ConfigurationError("SentinelBackend needs a URL or a Sentinel-managed client")
        kw |= pop_wait_options(sentinel_url["options"], wait_replicas)
        super().__init__(client, aclient, url=url, **kw)
        # Set (by the master watch) when async connections point at an old master.
        self._async_stale = False
        self._sentinel_url = sentinel_url
        self._sentinel: Any = None
        self._asentinel: Any = None  # the asyncio manager, when this backend made one
        self._check_interval = check_interval
        self._master: tuple[str, int] | None = None
        self._confirmed = -math.inf  # start of the last answer from the sentinels
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        # Replicas of the current master that Sentinel could promote (None: not asked yet),
        # and when they were last counted.
        self._healthy: int | None = None
        self._counted = -math.inf
        # The master before the last move: Sentinel lists it as a replica of the new one at
        # once, while it still reports itself a master until Sentinel demotes it (10 s+).
        self._previous: tuple[str, int] | None = None
        # After a move, a master without a replica still waits for one (so invalidations are
        # refused) for this long: other processes may still be reading the old master until
        # their own watch, and the sentinels they ask, name the new one.
        self._fence = failover_fence
        self._moved_at = -math.inf
        self._check_lock = threading.Lock()

    # ------------------------------------------------------------------ the master watch
    #
    # After SENTINEL FAILOVER the old master stays a writable master until Sentinel gets round
    # to reconfiguring it (10 s or more), and connections already open to it keep working.
    # So every process asks the sentinels which server is the master every check_interval:
    # when the answer changes it drops its connections (new ones go to the new master), makes
    # the channel resubscribe and empties its L1; and L1 trust never extends past the last
    # answer. Invalidations are also confirmed by a replica (WAIT): one that reached only an
    # old master left without replicas is reported, never acknowledged.

    def _ensure_watch(self) -> None:
        if self._watch is None:
            with self._lock:
                if self._watch is None:
                    self._watch = threading.Thread(
                        target=self._watch_loop, name="freshlink-sentinel-watch", daemon=True
                    )
                    self._watch.start()

    def _watch_loop(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self._check()
            except Exception as exc:
                (logger.debug if failing else logger.warning)(
                    "freshlink: no answer from the sentinels (%s)", exc
                )
                failing = True
            else:
                failing = False
            self._stop.wait(self._check_interval)

    def _check(self) -> None:
        """Ask the sentinels for the master once; act on a move (the watch, or a late read)."""
        with self._check_lock:
            started = time.monotonic()
            found = self._sentinels().discover_master(self._sentinel_url["service"])
            master = (str(found[0]), int(found[1]))
            moved = self._master is not None and master != self._master
            if moved:
                self._previous, self._moved_at = self._master, started
            # Counted before the move is acted on, recorded after: until the connections
            # to the old master are dropped, invalidations still wait for its replica.
            healthy = self._count_replicas(started, moved, master)
            if moved:
                self._moved(master)
            self._master = master
            if healthy is not None:
                self._healthy, self._counted = healthy, started
            self._confirmed = started

    def _perform(self, op: Op) -> Any:
        """See :meth:`RedisBackend._perform`, once the master answer is recent."""
        self._fresh()
        return super()._perform(op)

    async def _aperform(self, op: Op) -> Any:
        """See :meth:`RedisBackend._aperform`, on connections to the current master."""
        # The master check first: if it is the one that finds a failover, the connections to
        # the old master must be dropped before this request, not after it.
        self._fresh()  # a blocking round trip, only when the master watch lags
        if self._async_stale:
            await self._aprepare()
        return await super()._aperform(op)

    def _fresh(self) -> None:
        # A read must not go to a master named by an answer older than half the fence: if this
        # process's watch has fallen behind (a starved or resumed process), ask now.
        if self._master is not None and time.monotonic() - self._confirmed > self._fence / 2:
            try:
                self._check()
            except Exception as exc:
                raise self._error(exc) from exc

    def _count_replicas(self, now: float, moved: bool, master: tuple[str, int]) -> int | None:
        """Replicas of ``master`` that Sentinel could promote (asked every 0.5 s).

        The master's address and its replicas come from one sentinel in one round trip, and
        the count is kept only if that sentinel still names ``master``: a count of the *new*
        master's replicas must never decide whether to wait on the old one.
        """
        if self.wait_replicas != "auto" or (not moved and now - self._counted < 0.5):
            return None
        service = self._sentinel_url["service"]
        for sentinel in self._sentinels().sentinels:
            try:
                with sentinel.pipeline(transaction=False) as p:
                    p.sentinel_get_master_addr_by_name(service)
                    p.sentinel_slaves(service)
                    named, replicas = p.execute()
            except Exception:  # that sentinel is down: ask the next
                continue
            if named is None or (_text(named[0]), int(named[1])) != master:
                return None
            return sum(1 for r in replicas if _promotable(r, self._previous))
        return None

    def _replicas_of(self, node: Any) -> int:
        # Before the sentinels have been asked, assume a replica (WAIT as before). Within the
        # fence after a move, too: an invalidation acknowledged by the new master alone could
        # be read past by a process still reading the old one.
        self._ensure_watch()
        if self._healthy is None:
            return 1
        if self._healthy == 0 and time.monotonic() - self._moved_at < self._fence:
            return 1
        return self._healthy

    def _moved(self, master: tuple[str, int]) -> None:
        logger.warning(
            "freshlink: the sentinels name a new master %s:%s; reconnecting, L1 flushed",
            *master,
            extra={"freshlink_event": "master_moved"},
        )
        if self._client is not None:
            self._client.connection_pool.disconnect()
        self._async_stale = True
        if self._listener is not None:
            self._listener.reconnect()
        self._dispatch_reset()

    async def _aprepare(self) -> None:
        self._async_stale = False
        if self._aclient is not None:
            await self._aclient.connection_pool.disconnect()

    def _dispatch_alive(self, t: float) -> None:
        super()._dispatch_alive(min(t, self._confirmed))

    def ensure_listener(self) -> Channel:
        """Start the channel (and the master watch)."""
        self._ensure_watch()
        return super().ensure_listener()

    def _sentinels(self) -> Any:
        """One sync ``Sentinel`` manager, shared by the client and the channel."""
        if self._sentinel is None:
            self._sentinel = _redis("redis.sentinel").Sentinel(
                self._sentinel_url["sentinels"], sentinel_kwargs=self._sentinel_kwargs()
            )
            track(*self._sentinel.sentinels)  # the master watch's thread uses their pools
        return self._sentinel

    def _kwargs(self) -> dict[str, Any]:
        return {**self._options, **self._sentinel_url["options"]}

    def _sentinel_kwargs(self) -> dict[str, Any]:
        # The sentinels themselves: short timeouts too; they usually need no password.
        return {
            k: v
            for k, v in self._kwargs().items()
            if k in ("socket_timeout", "socket_connect_timeout", "ssl")
        }

    @property
    def client(self) -> Any:
        """The sync client on the current master (created on first use)."""
        self._ensure_watch()
        if self._client is None:  # from the URL, or alongside an asyncio client passed in
            with self._lock:
                if self._client is None:
                    self._client = self._sentinels().master_for(
                        self._sentinel_url["service"],
                        redis_connect_func=self._on_connect,
                        retry=_retry(),
                        **self._kwargs(),
                    )
                    track(self._client)
                    self.warmup.sync(self._client.connection_pool)
        return self._client

    @property
    def aclient(self) -> Any:
        """The asyncio client on the current master (created on first use)."""
        if self._aclient is None:
            sentinel = self._asentinel = _redis("redis.asyncio.sentinel").Sentinel(
                self._sentinel_url["sentinels"], sentinel_kwargs=self._sentinel_kwargs()
            )
            self._aclient = sentinel.master_for(
                self._sentinel_url["service"],
                redis_connect_func=self._aon_connect,
                retry=_retry(asyncio=True),
                **self._kwargs(),
            )
            self.warmup.aio(self._aclient.connection_pool)
        return self._aclient

    def _make_pubsub(self) -> Any:
        # A client of its own, found through the sentinels on every (re)connect, with no
        # socket timeout (reads are bounded by get_message's timeout).
        kwargs = {**self._kwargs(), "socket_timeout": None}
        with self._lock:
            client = self._sentinels().master_for(self._sentinel_url["service"], **kwargs)
        return client.pubsub(ignore_subscribe_messages=False)

    async def aclose(self) -> None:
        """Async :meth:`close`; also closes the asyncio client and sentinels made here."""
        await super().aclose()
        if self._asentinel is not None:
            if self.url is None and self._aclient is not None:
                await self._aclient.aclose()  # made here for a sync client passed in
            for sentinel in self._asentinel.sentinels:
                await sentinel.aclose()
            self._asentinel = None

    def after_fork(self) -> None:
        """See :meth:`RedisBackend.after_fork`; the master watch is restarted with the channel."""
        self._stop = threading.Event()
        self._watch = None
        self._check_lock = threading.Lock()  # the parent's watch may have held it at the fork
        self._asentinel = None  # its connections belong to the parent's event loop
        super().after_fork()

    def close(self) -> None:
        """Stop the channel and the watch, disconnect the client and from the sentinels."""
        self._stop.set()
        if self._watch is not None:
            self._watch.join(timeout=2)
        super().close()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                sentinel.close()
            self._sentinel = None


def _promotable(replica: dict[str, Any], previous: tuple[str, int] | None) -> bool:
    """A replica Sentinel could fail over to: any that is not down.

    Its link may be down or lagging, and during a failover it may already report itself a
    master while still listed as a replica: Sentinel may promote it having missed writes,
    which is exactly what WAIT is for. The one exception is the master we moved away from:
    listed as a replica of the new master but still a master until demoted, it can be
    promoted only after resyncing from the new one, so it is not waited for.
    """
    if replica.get("is_sdown") or replica.get("is_odown"):
        return False
    address = (_text(replica.get("ip")), int(replica.get("port") or 0))
    return not (address == previous and _text(replica.get("role-reported")) == "master")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
