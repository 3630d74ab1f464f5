"""The Redis Cluster backend: the Redis backend's guarantees with keys spread over slots.

How it differs from the single-server backend (see ``_cluster_scripts`` for the layout):

* every script touches one slot; an operation on names in several slots is one script per
  slot, sent in one pipelined round (redis-py's cluster pipeline, which follows MOVED/ASK);
* a warm read is one script on the entry's slot plus one per other slot holding one of its
  tags' generations, all in one round; the stamps are compared here, not in Lua;
* the node identity that stops a failover from resurrecting entries is read inside each
  script and kept with each generation (not learned per connection as on one server);
* invalidations are published with ``PUBLISH``, which the cluster forwards to every node; the
  listener subscribes to *every master* so that each message arrives first-hand on the
  connection to the node that published it, where its ``PING`` proves delivery
  (:class:`~freshlink.backends.channel.Fanout`).

redis-py is imported lazily, as for the single-server backend.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import BackendError, ConfigurationError, InvalidationError
from . import _cluster_scripts as scripts
from .base import Entry, Read
from .channel import Fanout
from .redis import DEFAULT_CLIENT_OPTIONS, RedisBackend, _entry_from, _meta, _redis, _retain_ms

__all__ = ["RedisClusterBackend", "parse_cluster_url"]

logger = logging.getLogger("freshlink")

#: Seconds a topology read tells which masters have replicas, when the channel's topology
#: thread (which reads it every topology_interval) is not running.
_REPLICAS_EVERY = 1.0

_SHA = {
    name: hashlib.sha1(getattr(scripts, name).encode(), usedforsecurity=False).hexdigest()
    for name in scripts.__all__
}

#: (script name, keys, args): one script call in a round.
Call = tuple[str, list[str], list[Any]]
#: A cluster operation: yields rounds of calls, receives their replies, returns its result.
Ops = Generator[list[Call], list[Any], Any]


@functools.lru_cache(maxsize=1 << 16)
def _place(prefix: str, name: str) -> tuple[str, int]:
    """The cluster key of a name and its slot (memoised: names repeat on every read)."""
    from redis.crc import key_slot

    # An entry, its own-key generation and its lease share the key's hash; a tag hashes alone.
    # The hash is hex, so a key or tag containing braces cannot change the slot.
    kind = name[len(prefix) : len(prefix) + 2] if name.startswith(prefix) else ""
    rest = name[len(prefix) + 2 :] if kind in ("e:", "k:", "l:") else name
    tag = hashlib.blake2b(rest.encode("utf-8", "surrogatepass"), digest_size=5).hexdigest()
    key = "{" + tag + "}" + name
    return key, key_slot(key.encode())


def parse_cluster_url(url: str, *, db: bool = False) -> dict[str, Any]:
    """Startup nodes and options from ``redis+cluster://[user:pass@]host:port[,host:port]``.

    ``db`` allows a ``db`` query option (Sentinel; a cluster has only database 0).
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise ConfigurationError(f"bad URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not host and not port:
            raise ConfigurationError(f"an empty node address in {url!r} (host:port[,host:port])")
        if not colon:  # "host" alone: the default port
            host, port = port, "6379"
        host = host.removeprefix("[").removesuffix("]")  # [::1]:7000
        try:
            number = int(port)
        except ValueError:
            number = -1
        if not host or not 0 < number < 65536:
            raise ConfigurationError(f"bad node {item!r} in {url!r} (host:port[,host:port])")
        nodes.append((host, number))
    options: dict[str, Any] = {"ssl": scheme.startswith("rediss")}
    if userinfo:
        user, _, password = userinfo.partition(":")
        options["username"] = unquote(user) or None
        options["password"] = unquote(password) or None
    for key, values in parse_qs(parts.query).items():
        if key == "db" and not db:
            raise ConfigurationError(f"a Redis Cluster has only database 0; remove db from {url!r}")
        options[key] = _option(url, key, values[-1])
    return {"nodes": nodes, "options": options}


class _Replicas(int):
    """``wait_replicas=``: a count or ``auto`` (kept as the string)."""

    def __new__(cls, value: str) -> Any:
        return "auto" if value == "auto" else int(value)


#: Query options a cluster or Sentinel URL may carry, with their types.
_OPTIONS: dict[str, type] = {
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "db": int,
    "wait_replicas": _Replicas,
    "wait_timeout": float,
    "ssl_cert_reqs": str,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
}


#: Settings a client made here takes from a client of the other kind passed in.
_INHERITED = frozenset(
    {"username", "password", "ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"}
)


def _option(url: str, key: str, value: str) -> Any:
    kind = _OPTIONS.get(key)
    if kind is None:
        raise ConfigurationError(
            f"unknown option {key!r} in {url!r}; known: {', '.join(sorted(_OPTIONS))}"
        )
    try:
        parsed = kind(value)
    except ValueError:
        raise ConfigurationError(
            f"option {key}={value!r} in {url!r} is not "
            + ("an int or 'auto'" if kind is _Replicas else kind.__name__)
        ) from None
    if isinstance(parsed, int | float) and not parsed >= 0:
        raise ConfigurationError(f"option {key}={value!r} in {url!r} must be >= 0")
    return parsed


class RedisClusterBackend(RedisBackend):
    """Entries and generations in a Redis Cluster, with the single-server guarantees."""

    def __init__(
        self,
        client: Any = None,
        aclient: Any = None,
        *,
        url: str | None = None,
        wait_replicas: int | str = "auto",
        **kw: Any,
    ) -> None:
        self._nodes_url = parse_cluster_url(url) if url is not None else None
        if self._nodes_url is not None:  # ?wait_replicas=N|auto, ?wait_timeout=S
            options = self._nodes_url["options"]
            wait_replicas = options.pop("wait_replicas", wait_replicas)
            if "wait_timeout" in options:
                kw["wait_timeout"] = options.pop("wait_timeout")
        super().__init__(client, aclient, url=url, wait_replicas=wait_replicas, **kw)
        self._prefix = self.namespace + ":"
        # Per master address, its replicas that could be promoted (from CLUSTER NODES, read
        # by the channel's topology thread or at most every _REPLICAS_EVERY seconds here).
        self._replicas: dict[tuple[str, int], int] = {}
        self._replicas_at = -math.inf
        self._without_replicas: set[tuple[str, int]] = set()

    def _hook(self, client: Any, hook: Callable[..., Any]) -> None:
        # No connect hook: cluster scripts read their node's identity themselves.
        return

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisClusterBackend:
        """A backend for ``redis+cluster://`` (or ``rediss+cluster://``) URLs."""
        _redis()
        return cls(url=url, **options)

    def _startup_nodes(self) -> list[tuple[str, int]]:
        # From the URL, or from the client passed in (the channel needs a sync client even
        # for an asyncio app, and the async API an asyncio one).
        if self._nodes_url is not None:
            return list(self._nodes_url["nodes"])
        given = self._client if self._client is not None else self._aclient
        return [(node.host, node.port) for node in given.get_nodes()]

    def _cluster_kwargs(self) -> dict[str, Any]:
        if self._nodes_url is not None:
            given = self._nodes_url["options"]
        else:  # the credentials and TLS settings of the client passed in
            other = self._client if self._client is not None else self._aclient
            kwargs = getattr(other, "connection_kwargs", None) or other.get_connection_kwargs()
            given = {k: v for k, v in kwargs.items() if k in _INHERITED}
        kw = {**DEFAULT_CLIENT_OPTIONS, **given, **self._options}
        kw.pop("health_check_interval", None)
        return kw

    @property
    def client(self) -> Any:
        """The sync ``RedisCluster`` client (created from the URL on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    cluster = _redis("redis.cluster")
                    nodes = [cluster.ClusterNode(h, p) for h, p in self._startup_nodes()]
                    try:  # RedisCluster reads the slot table at once
                        self._client = cluster.RedisCluster(
                            startup_nodes=nodes, **self._cluster_kwargs()
                        )
                    except Exception as exc:
                        raise self._error(exc) from exc
        return self._client

    @property
    def aclient(self) -> Any:
        """The asyncio ``RedisCluster`` client (created from the URL on first use)."""
        if self._aclient is None:
            cluster = _redis("redis.asyncio.cluster")
            self._aclient = cluster.RedisCluster(
                startup_nodes=[cluster.ClusterNode(h, p) for h, p in self._startup_nodes()],
                **self._cluster_kwargs(),
            )
        return self._aclient

    def run_id(self) -> str:
        """Not used on a cluster: each script reads its own node's identity."""
        return ""

    async def arun_id(self) -> str:
        """Not used on a cluster."""
        return ""

    # ------------------------------------------------------------------ rounds

    def _key(self, name: str) -> str:
        return _place(self._prefix, name)[0]

    def _by_slot(self, names: Sequence[str]) -> dict[int, list[int]]:
        """Positions of ``names`` grouped by slot, in order."""
        groups: dict[int, list[int]] = {}
        for i, name in enumerate(names):
            groups.setdefault(_place(self._prefix, name)[1], []).append(i)
        return groups

    def _gens_calls(self, names: Sequence[str], groups: dict[int, list[int]]) -> list[Call]:
        return [
            ("GENS", [self._key(names[i]) for i in idx], [self._gen_ttl_ms, self._seed()])
            for idx in groups.values()
        ]

    def _load_scripts(self, client: Any) -> Any:
        return [client.script_load(getattr(scripts, name)) for name in scripts.__all__]

    def _plan(self, client: Any, calls: list[Call]) -> tuple[list[tuple[Any, ...]], list[int]]:
        """The pipelined commands of a round, each with its node, then a WAIT per master
        that ran an increment when invalidations are confirmed; and the replicas each waits for."""
        commands: list[tuple[Any, ...]] = []
        waits: dict[str, tuple[Any, int]] = {}
        single = self._single(calls)
        for name, keys, args in calls:
            # Name the node: redis-py's sync cluster pipeline would otherwise ask the server
            # for EVALSHA's keys (COMMAND GETKEYS), one blocking round trip per script. A MOVED
            # reply is still followed (re-routed by key). A lone script (a warm hit with no
            # tags elsewhere) is sent as it is, without the lookup.
            node: Any = None if single else client.get_node_from_key(keys[0])
            commands.append((node, "EVALSHA", _SHA[name], len(keys), *keys, *args))
            if name == "BUMP" and self.wait_replicas != 0:
                # Confirmed by a replica of each master that ran an increment (WAIT on the
                # same connection, in the same round), as behind Sentinel.
                need = self._wait_for(node)
                if need > 0:
                    waits[node.name] = (node, need)
        for node, need in waits.values():
            commands += [(node, "WAIT", need, ms) for ms in self._wait_slices]
        return commands, [need for _node, need in waits.values()]

    def _single(self, calls: list[Call]) -> bool:
        """One script and nothing to confirm: sent without a pipeline."""
        return len(calls) == 1 and not (self.wait_replicas != 0 and calls[0][0] == "BUMP")

    def _replicas_of(self, node: Any) -> int:
        """Replicas of a master per the last topology read (unknown: assume one)."""
        return self._replicas.get((node.host, int(node.port)), 1)

    def _replicas_stale(self, calls: list[Call]) -> bool:
        return (
            self.wait_replicas == "auto"
            and any(name == "BUMP" for name, _k, _a in calls)
            and time.monotonic() - self._replicas_at > _REPLICAS_EVERY
        )

    def _learn_replicas(self, table: Any, asked_host: str, started: float) -> None:
        """Record each master's replicas from a CLUSTER NODES reply; log masters without."""
        self._replicas = _replicas_in(table, asked_host)
        self._replicas_at = started
        alone = {node for node, n in self._replicas.items() if n == 0}
        for node in sorted(alone - self._without_replicas):
            logger.warning(
                "freshlink: cluster master %s:%s has no replica: its invalidations are "
                "acknowledged without WAIT (no replica could be promoted having missed them)",
                *node,
                extra={"freshlink_event": "master_without_replica"},
            )
        self._without_replicas = alone

    def _read_replicas(self, client: Any) -> None:
        started = time.monotonic()
        try:
            self._topology(client, started)
        except BackendError:
            self._replicas_at = started  # unknown masters are assumed to have a replica

    async def _aread_replicas(self, client: Any) -> None:
        started = time.monotonic()
        try:
            node = client.get_random_node()
            table = await client.execute_command("CLUSTER NODES", target_nodes=node)
        except Exception:
            self._replicas_at = started
        else:
            self._learn_replicas(table, node.host, started)

    def _round(self, calls: list[Call]) -> list[Any]:
        client = self.client
        if self._replicas_stale(calls):
            self._read_replicas(client)
        noscript = _redis().exceptions.NoScriptError
        for attempt in (0, 1):
            try:
                commands, waits = self._plan(client, calls)
                if self._single(calls):
                    return [client.execute_command(*commands[0][1:])]
                with client.pipeline(transaction=False) as p:
                    for node, *command in commands:
                        p.execute_command(*command, target_nodes=node)
                    return self._confirmed_all(list(p.execute()), waits)
            except noscript:
                # A new or failed-over master has not seen the scripts (they are not
                # replicated): load them on every master and try once more.
                if attempt:
                    raise
                self._load_scripts(client)
        raise AssertionError("unreachable")

    async def _around(self, calls: list[Call]) -> list[Any]:
        client = self.aclient
        noscript = _redis().exceptions.NoScriptError
        for attempt in (0, 1):
            try:
                if not self._single(calls):
                    await client.initialize()  # the slot table, for the node lookups
                    if self._replicas_stale(calls):
                        await self._aread_replicas(client)
                commands, waits = self._plan(client, calls)
                if self._single(calls):
                    return [await client.execute_command(*commands[0][1:])]
                p = client.pipeline(transaction=False)
                for node, *command in commands:
                    p.execute_command(*command, target_nodes=node)
                return self._confirmed_all(list(await p.execute()), waits)
            except noscript:
                if attempt:
                    raise
                for name in scripts.__all__:
                    await client.script_load(getattr(scripts, name))
        raise AssertionError("unreachable")

    def _confirmed_all(self, replies: list[Any], needs: list[int]) -> list[Any]:
        """The scripts' replies, once every WAIT at the end says a replica has the writes."""
        if needs:
            k = len(self._wait_slices)  # WAITs per master, in a row (see RedisBackend)
            waits = replies[-len(needs) * k :]
            for i, need in enumerate(needs):
                self._confirmed_by(max(waits[i * k : (i + 1) * k]), need)
            return replies[: -len(needs) * k]
        return replies

    def _drive(self, ops: Ops, kind: type[BackendError] = BackendError) -> Any:
        try:
            calls = next(ops)
            while True:
                calls = ops.send(self._round(calls))
        except StopIteration as stop:
            return stop.value
        except Exception as exc:
            raise self._error(exc, kind) from exc

    async def _adrive(self, ops: Ops, kind: type[BackendError] = BackendError) -> Any:
        try:
            calls = next(ops)
            while True:
                calls = ops.send(await self._around(calls))
        except StopIteration as stop:
            return stop.value
        except Exception as exc:
            raise self._error(exc, kind) from exc

    # ------------------------------------------------------------------ operations

    def _split(self, key: str, names: Sequence[str]) -> tuple[list[int], dict[int, list[int]]]:
        """Positions of ``names`` in the entry's slot, and the others grouped by slot."""
        groups = self._by_slot(names)
        return groups.pop(_place(self._prefix, key)[1], []), groups

    def _current(self, names: Sequence[str]) -> Ops:
        groups = self._by_slot(names)
        replies = yield self._gens_calls(names, groups)
        return _gather(len(names), list(groups.values()), replies)

    def _read(self, key: str, names: Sequence[str]) -> Ops:
        here, others = self._split(key, names)
        calls: list[Call] = [
            (
                "READ",
                [self._key(key), *(self._key(names[i]) for i in here)],
                [self._gen_ttl_ms, self._seed()],
            ),
            *self._gens_calls(names, others),
        ]
        replies = yield calls
        first = replies[0]
        gens = _gather(len(names), [here, *others.values()], [first[4:], *replies[1:]])
        stored_names, stamps, meta, payload = first[:4]
        if stored_names is None:
            return Read(None, gens)
        try:
            if stored_names == "\n".join(names).encode():
                entry = _entry_from(tuple(names), stamps, meta, payload)
                return Read(entry if entry.stamps == gens else None, gens)
            # A reader that does not know the entry's tags (cache.get): check its own names.
            entry = _entry_from(stored_names, stamps, meta, payload)
        except (ValueError, TypeError, UnicodeDecodeError):
            return Read(None, gens)  # garbage someone wrote into the entry: a miss
        current = yield from self._current(entry.names)
        return Read(entry if entry.stamps == current else None, gens)

    def read(self, key: str, gens: Sequence[str]) -> Read:
        """See :meth:`Backend.read` (one round: a script per slot involved)."""
        result: Read = self._drive(self._read(key, gens))
        return result

    async def aread(self, key: str, gens: Sequence[str]) -> Read:
        """See :meth:`Backend.read`."""
        result: Read = await self._adrive(self._read(key, gens))
        return result

    def current(self, gens: Sequence[str]) -> tuple[int, ...]:
        """See :meth:`Backend.current`."""
        result: tuple[int, ...] = self._drive(self._current(gens))
        return result

    async def acurrent(self, gens: Sequence[str]) -> tuple[int, ...]:
        """See :meth:`Backend.current`."""
        result: tuple[int, ...] = await self._adrive(self._current(gens))
        return result

    def _write(self, key: str, entry: Entry, retain: float | None, token: str) -> Ops:
        names, stamps = entry.names, entry.stamps
        here, others = self._split(key, names)
        retain_ms = str(_retain_ms(retain))
        calls: list[Call] = [
            (
                "WRITE",
                [self._key(key), self.lease_key(key), *(self._key(names[i]) for i in here)],
                [
                    self._gen_ttl_ms,
                    self._seed(),
                    "\n".join(names),
                    ",".join(map(str, stamps)),
                    ",".join(str(stamps[i]) for i in here),
                    _meta(entry),
                    entry.payload,
                    retain_ms,
                    token,
                    self.fill_channel,
                    key,
                ],
            ),
        ]
        for idx in others.values():
            calls.append(
                (
                    "CHECK",
                    [self._key(names[i]) for i in idx],
                    [
                        self._gen_ttl_ms,
                        self._seed(),
                        retain_ms,
                        ",".join(str(stamps[i]) for i in idx),
                    ],
                )
            )
        replies = yield calls
        # Stored only if every slot agreed; an entry stored with a stale stamp elsewhere is
        # never served (every read compares all stamps), so it needs no clean-up.
        return all(int(r) == 1 for r in replies)

    def write(self, key: str, entry: Entry, retain: float | None, token: str = "") -> bool:
        """See :meth:`Backend.write`; also ends the lease ``token`` and wakes waiters."""
        return bool(self._drive(self._write(key, entry, retain, token)))

    async def awrite(self, key: str, entry: Entry, retain: float | None, token: str = "") -> bool:
        """See :meth:`Backend.write`."""
        return bool(await self._adrive(self._write(key, entry, retain, token)))

    def _bump_call(self, names: Sequence[str], idx: list[int], retain: str) -> Call:
        return (
            "BUMP",
            [self._key(names[i]) for i in idx],
            [self._gen_ttl_ms, self._seed(), self.inv_channel, retain],
        )

    def _invalidate(self, names: Sequence[str]) -> Ops:
        groups = self._by_slot(names)
        replies = yield [self._bump_call(names, idx, "") for idx in groups.values()]
        return _gather(len(names), list(groups.values()), replies)

    def invalidate(self, gens: Sequence[str]) -> tuple[int, ...]:
        """See :meth:`Backend.invalidate` (a script per slot; not atomic across slots)."""
        result: tuple[int, ...] = self._drive(self._invalidate(gens), InvalidationError)
        return result

    async def ainvalidate(self, gens: Sequence[str]) -> tuple[int, ...]:
        """See :meth:`Backend.invalidate`."""
        result: tuple[int, ...] = await self._adrive(self._invalidate(gens), InvalidationError)
        return result

    def _write_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> Ops:
        # Without cross-slot atomicity: bump the other slots first, then, on the entry's slot,
        # bump its generations and store the value only if every generation moved from exactly
        # the value the writer read to that plus one. Two writers finishing out of order then
        # cannot leave the older value valid: the later bump of either sees a moved value.
        names = entry.names
        here, others = self._split(key, names)
        retain_ms = str(_retain_ms(retain))
        new: list[str] = ["?"] * len(names)
        moved = True
        if others:
            replies = yield [self._bump_call(names, idx, retain_ms) for idx in others.values()]
            for idx, reply in zip(others.values(), replies, strict=True):
                for i, v in zip(idx, reply, strict=True):
                    new[i] = str(int(v))
                    moved = moved and int(v) == expected[i] + 1
        call: Call = (
            "BUMP",
            [self._key(key), *(self._key(names[i]) for i in here)],
            [
                self._gen_ttl_ms,
                self._seed(),
                self.inv_channel,
                retain_ms,
                "\n".join(names),
                ",".join(new),
                ",".join(str(expected[i]) for i in here),
                "1" if moved else "0",
                _meta(entry),
                entry.payload,
            ],
        )
        (reply,) = yield [call]
        return int(reply[-1]) == 1

    def write_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> bool:
        """See :meth:`Backend.write_through` (other slots first, then the entry's slot)."""
        ops = self._write_through(key, entry, expected, retain)
        return bool(self._drive(ops, InvalidationError))

    async def awrite_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> bool:
        """See :meth:`Backend.write_through`."""
        ops = self._write_through(key, entry, expected, retain)
        return bool(await self._adrive(ops, InvalidationError))

    def get_entry(self, key: str) -> Entry | None:
        """See :meth:`Backend.get_entry`."""
        return super().get_entry(self._key(key))

    def delete(self, key: str) -> bool:
        """See :meth:`Backend.delete`."""
        return super().delete(self._key(key))

    async def adelete(self, key: str) -> bool:
        """See :meth:`Backend.delete`."""
        return await super().adelete(self._key(key))

    def lease_key(self, key: str) -> str:
        """The lease key of an entry key: in the entry's slot, so WRITE can end it."""
        entry_prefix = self.namespace + ":e:"
        name = self.namespace + ":l:" + key.removeprefix(entry_prefix)
        return "{" + self._key(key)[1:].partition("}")[0] + "}" + name

    # ------------------------------------------------------------------ channel

    def _new_listener(self) -> Fanout:
        """One subscription per master (see :class:`~freshlink.backends.channel.Fanout`)."""
        return Fanout(
            self._masters,
            self._make_node_pubsub,
            invalidations=self.inv_channel,
            fills=self.fill_channel,
            ping_interval=self._ping_interval,
            on_invalidate=self._dispatch_invalidation,
            on_fill=self._waiters.notify,
            on_alive=self._dispatch_alive,
            on_reset=self._dispatch_reset,
        )

    def _masters(self) -> list[tuple[str, int]]:
        """The masters that own slots now, asking the nodes the client knows in turn."""
        return self._topology(self.client, time.monotonic())

    def _topology(self, client: Any, started: float) -> list[tuple[str, int]]:
        """Read CLUSTER NODES: learn each master's replicas, return the masters with slots."""
        last: Exception | None = None
        for node in client.get_nodes():
            try:
                table = client.get_redis_connection(node).execute_command("CLUSTER NODES")
            except Exception as exc:  # that node is down: ask the next
                last = exc
                continue
            self._learn_replicas(table, node.host, started)
            return _masters_in(table, node.host)
        raise BackendError(f"redis cluster: no node answered CLUSTER NODES ({last})")

    def _make_node_pubsub(self, host: str, port: int) -> Any:
        # Same connection settings as the cluster's own node connections (auth, TLS...), to
        # one given node, with no socket timeout (reads are bounded by get_message's timeout).
        redis = _redis()
        pool = self.client.get_redis_connection(self.client.get_nodes()[0]).connection_pool
        kwargs = dict(pool.connection_kwargs)
        for drop in ("redis_connect_func", "retry", "host", "port"):
            kwargs.pop(drop, None)
        kwargs["socket_timeout"] = None
        pubsub_pool = redis.ConnectionPool(
            connection_class=pool.connection_class, host=host, port=port, **kwargs
        )
        return redis.Redis(connection_pool=pubsub_pool).pubsub(ignore_subscribe_messages=False)


def _gather(n: int, positions: list[list[int]], replies: Sequence[Any]) -> tuple[int, ...]:
    """Put per-slot replies back in the order of the ``n`` names they were grouped from."""
    values = [0] * n
    for idx, reply in zip(positions, replies, strict=True):
        for i, v in zip(idx, reply, strict=True):
            values[i] = int(v)
    return tuple(values)


def _rows(table: Any) -> list[tuple[str, str, set[str], str, bool]]:
    """(id, address, flags, master id, has slots) per node of a CLUSTER NODES reply (raw or
    parsed by redis-py)."""
    if isinstance(table, bytes | str):
        text = table.decode() if isinstance(table, bytes) else table
        rows = []
        for line in text.splitlines():
            f = line.split()
            if len(f) >= 8:
                rows.append((f[0], f[1].split("@")[0], set(f[2].split(",")), f[3], len(f) > 8))
        return rows
    return [
        (
            str(info.get("node_id", "")),
            addr,
            set(info["flags"].split(",")),
            str(info.get("master_id", "-")),
            bool(info.get("slots")),
        )
        for addr, info in table.items()
    ]


def _address(addr: str, asked_host: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host or asked_host, int(port)


def _masters_in(table: Any, asked_host: str) -> list[tuple[str, int]]:
    """Masters with slots and no failure flag, from CLUSTER NODES (raw or parsed by redis-py)."""
    masters = []
    for _id, addr, marks, _master, has_slots in _rows(table):
        # A master that owns slots is kept even when flagged as failing: "fail?" is one node's
        # opinion, and a master cut off from the bus may still serve clients and publish. Its
        # subscription then just stops proving delivery until a failover moves its slots.
        # A master without slots (one importing slots while the cluster grows) is kept too,
        # unless it has failed.
        if "master" not in marks or marks & {"noaddr", "handshake"}:
            continue
        if has_slots or "fail" not in marks:
            masters.append(_address(addr, asked_host))
    return sorted(masters)


def _replicas_in(table: Any, asked_host: str) -> dict[tuple[str, int], int]:
    """Per master address, its replicas that could be promoted (not failed), from CLUSTER NODES."""
    rows = _rows(table)
    by_id = {
        node_id: _address(addr, asked_host)
        for node_id, addr, marks, _master, _slots in rows
        if "master" in marks and not marks & {"noaddr", "handshake"}
    }
    counts = dict.fromkeys(by_id.values(), 0)
    for _id, _addr, marks, master, _slots in rows:
        if "slave" in marks and not marks & {"fail", "noaddr", "handshake"} and master in by_id:
            counts[by_id[master]] += 1
    return counts
