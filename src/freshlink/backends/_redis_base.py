"""What the Redis backends share: client settings, the retry and WAIT policies, leases, and
(from :class:`~freshlink.backends._channel_base.ChannelBackend`) fill waiters and the channel.

Every operation is written once, as a generator that yields what it needs from Redis (see
:mod:`freshlink.backends._wire`: a script, a round of them on a cluster, or plain commands) and
returns the result; :meth:`RedisBase._drive` performs the requests with blocking calls and
:meth:`RedisBase._adrive` with awaited ones (:mod:`freshlink._drive`). A backend supplies the
operations that differ (reads, writes, invalidations) and how it sends a script.

redis-py is imported lazily by :func:`_redis` so that ``import freshlink`` never needs it.
"""

from __future__ import annotations

import abc
import importlib
import math
import random
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, Self, TypeVar

from .._drive import adrive, drive
from ..errors import BackendError, ConfigurationError, InvalidationError, MissingDependencyError
from ._channel_base import ChannelBackend
from ._forksafe import track
from ._kept import Kept
from ._wire import Call, Commands, Op, Steps, decode_entry, pipelined, release_message
from .base import Entry, Read, new_generation

__all__ = ["DEFAULT_CLIENT_OPTIONS", "RedisBase"]

R = TypeVar("R")

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


def _retry(asyncio: bool = False) -> Any:
    """The retry policy of clients made here (sync, or for an asyncio client)."""
    _redis()
    from redis.backoff import ExponentialBackoff

    # One quick retry absorbs a dropped idle connection; more would only stall requests.
    backoff = ExponentialBackoff(cap=0.02, base=0.002)
    if asyncio:
        from redis.asyncio.retry import Retry as AsyncRetry

        return AsyncRetry(backoff, retries=1)
    from redis.retry import Retry

    return Retry(backoff, retries=1)


class RedisBase(ChannelBackend):
    """The plumbing of the Redis backends (single server, Sentinel, cluster)."""

    synchronous = False
    supports_leases = True

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
            raise ConfigurationError(
                f"{type(self).__name__} needs a url, a client or an async client"
            )
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
        track(client)
        self._aclient = aclient
        # An asyncio client made here (from the URL or the sync client) is remade in a forked
        # child; one passed in is the caller's, so only its pool's parent connections are
        # forgotten there.
        self._own_aclient = aclient is None
        self._rng = rng
        # How long a generation lives while no stored entry depends on it (a read miss, a
        # tag nobody caches): storing an entry extends its generations to the entry's own
        # lifetime, so this only bounds what a key-cardinality attack can leave behind.
        self._gen_ttl_ms = str(int(gen_ttl * 1000))
        #: The generations this process extended lately, which its fills skip (see _kept).
        self.kept = Kept(gen_ttl, time.monotonic)
        super().__init__(namespace, ping_interval)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A backend for a URL of this backend's schemes (see :mod:`freshlink.keyspace`)."""
        _redis()
        return cls(url=url, **options)

    @property
    @abc.abstractmethod
    def client(self) -> Any:
        """The sync redis-py client (created on first use)."""

    @property
    @abc.abstractmethod
    def aclient(self) -> Any:
        """The asyncio redis-py client (created on first use)."""

    # ------------------------------------------------------------------ performing requests

    def _seed(self) -> str:
        # The scripts add a key's position (< 2**20) to this; keep the sum below 2**52.
        return str(new_generation(self._rng) - (1 << 20))

    def _error(self, exc: BaseException, kind: type[BackendError] = BackendError) -> BackendError:
        if isinstance(exc, BackendError):
            return exc
        return kind(f"redis: {type(exc).__name__}: {exc}")

    def _drive(self, steps: Steps[R], kind: type[BackendError] = BackendError) -> R:
        """Run an operation with the sync client; failures become ``kind``."""
        try:
            return drive(steps, self._perform)
        except BackendError:
            raise
        except Exception as exc:
            raise self._error(exc, kind) from exc

    async def _adrive(self, steps: Steps[R], kind: type[BackendError] = BackendError) -> R:
        """Async :meth:`_drive`."""
        try:
            return await adrive(steps, self._aperform)
        except BackendError:
            raise
        except Exception as exc:
            raise self._error(exc, kind) from exc

    def _perform(self, op: Op) -> Any:
        """Send one request with the sync client."""
        if type(op) is Commands:
            commands = op.commands
            if len(commands) == 1:
                return [self.client.execute_command(*commands[0])]
            return pipelined(self.client, commands).execute()
        return self._script(op)  # type: ignore[arg-type]

    async def _aperform(self, op: Op) -> Any:
        """Send one request with the asyncio client."""
        if type(op) is Commands:
            commands = op.commands
            if len(commands) == 1:
                return [await self.aclient.execute_command(*commands[0])]
            return await pipelined(self.aclient, commands).execute()
        return await self._ascript(op)  # type: ignore[arg-type]

    @abc.abstractmethod
    def _script(self, op: Call | list[Call]) -> Any:
        """Run a script (or a round of them) with the sync client; reload it on NOSCRIPT."""

    @abc.abstractmethod
    async def _ascript(self, op: Call | list[Call]) -> Any:
        """Async :meth:`_script`."""

    # ------------------------------------------------------------------ replica confirmation

    def _wait_for(self, node: Any = None) -> int:
        """Replicas an invalidation on ``node`` (None: the one master) must reach first."""
        if self.wait_replicas == "auto":
            return min(1, self._replicas_of(node))
        return int(self.wait_replicas)

    @abc.abstractmethod
    def _replicas_of(self, node: Any) -> int:
        """Replicas of ``node`` (None: the one master) that could be promoted."""

    def _waits(self, need: int) -> list[tuple[Any, ...]]:
        """The WAITs that follow an increment on its connection, in slices (see __init__)."""
        return [("WAIT", need, ms) for ms in self._wait_slices]

    def _after_waits(self, replies: list[Any], needs: list[int]) -> list[Any]:
        """The replies before the WAITs at the end (one run of slices per entry of ``needs``),
        once every run says enough replicas have the writes."""
        if not needs:
            return replies
        k = len(self._wait_slices)
        waits = replies[-len(needs) * k :]
        for i, need in enumerate(needs):
            acked = max(waits[i * k : (i + 1) * k])
            if int(acked) < need:
                raise InvalidationError(
                    f"redis: the invalidation reached {acked} of {need} replica(s) within "
                    f"{self._wait_ms} ms, so a failover could lose it: not confirmed (a replica "
                    "lagging under load: raise wait_timeout; no replicas: wait_replicas='auto')"
                )
        return replies[: -len(needs) * k]

    # ------------------------------------------------------------------ operations

    @abc.abstractmethod
    def _read(self, key: str, names: Sequence[str]) -> Steps[Read]:
        """See :meth:`Backend.read`."""

    @abc.abstractmethod
    def _write(self, key: str, entry: Entry, retain: float | None, token: str) -> Steps[bool]:
        """See :meth:`Backend.write`."""

    @abc.abstractmethod
    def _write_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> Steps[bool]:
        """See :meth:`Backend.write_through`."""

    @abc.abstractmethod
    def _invalidate(self, names: Sequence[str]) -> Steps[tuple[int, ...]]:
        """See :meth:`Backend.invalidate`."""

    @abc.abstractmethod
    def _current(self, names: Sequence[str]) -> Steps[tuple[int, ...]]:
        """See :meth:`Backend.current`."""

    @abc.abstractmethod
    def _stored(self, key: str) -> str:
        """The Redis key the entry ``key`` is stored under."""

    @abc.abstractmethod
    def lease_key(self, key: str) -> str:
        """The single-flight lease key of an entry key."""

    def _get_entry(self, key: str) -> Steps[Entry | None]:
        (e,) = yield Commands((("HMGET", self._stored(key), "n", "s", "m", "p"),))
        return decode_entry(e[0], e[1], e[2], e[3]) if e[3] is not None else None

    def _delete(self, key: str) -> Steps[bool]:
        (n,) = yield Commands((("DEL", self._stored(key)),))
        return bool(n)

    def _lease(self, key: str, ttl: float) -> Steps[tuple[str | None, float]]:
        token = secrets.token_hex(8)
        ms = max(int(ttl * 1000), 1)
        left = yield Call("LEASE", self._leases(key), [token, ms])
        return (token, 0.0) if left == -1 else (None, max(int(left), 0) / 1000)

    def _release(self, key: str, token: str, error: str) -> Steps[None]:
        message = release_message(key, error)
        yield Call("RELEASE", self._leases(key), [token, self.keyspace.fills, message])

    def _leases(self, key: str) -> list[str]:
        """The keys that may hold a fill lease of the entry ``key`` (see LEASE, RELEASE)."""
        return [self.lease_key(key)]

    # The Backend API: each operation driven with blocking calls, or awaited.

    def read(self, key: str, names: Sequence[str]) -> Read:
        """See :meth:`Backend.read`."""
        return self._drive(self._read(key, names))

    async def aread(self, key: str, names: Sequence[str]) -> Read:
        """See :meth:`Backend.read`."""
        return await self._adrive(self._read(key, names))

    def write(self, key: str, entry: Entry, retain: float | None, token: str = "") -> bool:
        """See :meth:`Backend.write`; also ends the lease ``token`` and wakes waiters."""
        return self._drive(self._write(key, entry, retain, token))

    async def awrite(self, key: str, entry: Entry, retain: float | None, token: str = "") -> bool:
        """See :meth:`Backend.write`."""
        return await self._adrive(self._write(key, entry, retain, token))

    def write_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> bool:
        """See :meth:`Backend.write_through`."""
        return self._drive(self._write_through(key, entry, expected, retain), InvalidationError)

    async def awrite_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> bool:
        """See :meth:`Backend.write_through`."""
        steps = self._write_through(key, entry, expected, retain)
        return await self._adrive(steps, InvalidationError)

    def invalidate(self, names: Sequence[str]) -> tuple[int, ...]:
        """See :meth:`Backend.invalidate`."""
        return self._drive(self._invalidate(names), InvalidationError)

    async def ainvalidate(self, names: Sequence[str]) -> tuple[int, ...]:
        """See :meth:`Backend.invalidate`."""
        return await self._adrive(self._invalidate(names), InvalidationError)

    def current(self, names: Sequence[str]) -> tuple[int, ...]:
        """See :meth:`Backend.current`."""
        return self._drive(self._current(names))

    async def acurrent(self, names: Sequence[str]) -> tuple[int, ...]:
        """See :meth:`Backend.current`."""
        return await self._adrive(self._current(names))

    def get_entry(self, key: str) -> Entry | None:
        """See :meth:`Backend.get_entry`."""
        return self._drive(self._get_entry(key))

    def delete(self, key: str) -> bool:
        """See :meth:`Backend.delete`."""
        return self._drive(self._delete(key))

    async def adelete(self, key: str) -> bool:
        """See :meth:`Backend.delete`."""
        return await self._adrive(self._delete(key))

    def lease(self, key: str, ttl: float) -> tuple[str | None, float]:
        """Try to become the one process filling ``key``: (token, 0) or (None, seconds left)."""
        return self._drive(self._lease(key, ttl))

    async def alease(self, key: str, ttl: float) -> tuple[str | None, float]:
        """Async :meth:`lease`."""
        return await self._adrive(self._lease(key, ttl))

    def release(self, key: str, token: str, error: str) -> None:
        """Give a lease back without a fill; waiters get ``error`` ("" = just retry)."""
        self._drive(self._release(key, token, error))

    async def arelease(self, key: str, token: str, error: str) -> None:
        """Async :meth:`release`."""
        await self._adrive(self._release(key, token, error))

    def after_fork(self) -> None:
        """See :meth:`ChannelBackend.after_fork`; also forgets asyncio connections.

        redis-py's sync pools notice the new pid by themselves; asyncio pools do not, so
        theirs are dropped without closing (closing would shut the parent's sockets).
        """
        if self._aclient is not None:
            if self._own_aclient:
                self._aclient = None
            else:
                pool = getattr(self._aclient, "connection_pool", None)
                if pool is not None:
                    pool.reset()
        super().after_fork()

    def close(self) -> None:
        """Stop the channel and disconnect the clients we created."""
        super().close()
        if self._client is not None and self.url is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()
        if self._aclient is not None and self.url is not None:
            await self._aclient.aclose()
