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
from collections.abc import Sequence
from typing import Any

from ..keyspace import Keyspace
from . import _cluster_scripts as scripts
from ._forksafe import track
from ._redis_base import DEFAULT_CLIENT_OPTIONS, RedisBase, _redis
from ._wire import Call, Steps, decode_entry, encode_meta, retain_ms
from .base import Entry, Read
from .channel import Fanout
from .topology import Replicas
from .urls import parse_cluster_url, pop_wait_options

__all__ = ["RedisClusterBackend", "parse_cluster_url"]

_SOURCE: dict[str, str] = {name: getattr(scripts, name) for name in scripts.__all__}
_SHA = {
    name: hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    for name, source in _SOURCE.items()
}

#: Settings a client made here takes from a client of the other kind passed in.
_INHERITED = frozenset(
    {"username", "password", "ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"}
)


@functools.lru_cache(maxsize=1 << 16)
def _place(namespace: str, name: str) -> tuple[str, int]:
    """The cluster key of a name and its slot (memoised: names repeat on every read)."""
    from redis.crc import key_slot

    # An entry and its own-key generation share the key's hash (and the entry's lease its hash
    # tag: see lease_key); a tag hashes alone. The hash is hex, so a key or tag containing
    # braces cannot change the slot.
    keyspace = Keyspace(namespace)
    rest = name
    for prefix in (keyspace.entry_prefix, keyspace.own_prefix):
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            break
    tag = hashlib.blake2b(rest.encode("utf-8", "surrogatepass"), digest_size=5).hexdigest()
    key = "{" + tag + "}" + name
    return key, key_slot(key.encode())


class RedisClusterBackend(RedisBase):
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
        options = self._nodes_url["options"] if self._nodes_url is not None else {}
        kw |= pop_wait_options(options, wait_replicas)  # ?wait_replicas=N|auto, ?wait_timeout=S
        super().__init__(client, aclient, url=url, **kw)
        # Per master address, its replicas that could be promoted (from CLUSTER NODES, read
        # by the channel's topology thread or at most every REPLICAS_EVERY seconds here).
        self._replicas = Replicas()

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
                        track(self._client)
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

    # ------------------------------------------------------------------ rounds

    def _key(self, name: str) -> str:
        return _place(self.namespace, name)[0]

    def _by_slot(self, names: Sequence[str]) -> dict[int, list[int]]:
        """Positions of ``names`` grouped by slot, in order."""
        groups: dict[int, list[int]] = {}
        for i, name in enumerate(names):
            groups.setdefault(_place(self.namespace, name)[1], []).append(i)
        return groups

    def _gens_calls(self, names: Sequence[str], groups: dict[int, list[int]]) -> list[Call]:
        return [
            Call("GENS", [self._key(names[i]) for i in idx], [self._gen_ttl_ms, self._seed()])
            for idx in groups.values()
        ]

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
            commands += [(node, *wait) for wait in self._waits(need)]
        return commands, [need for _node, need in waits.values()]

    def _single(self, calls: list[Call]) -> bool:
        """One script and nothing to confirm: sent without a pipeline."""
        return len(calls) == 1 and not (self.wait_replicas != 0 and calls[0].name == "BUMP")

    def _replicas_of(self, node: Any) -> int:
        """Replicas of a master per the last topology read (unknown: assume one)."""
        return self._replicas.of(node)

    def _replicas_stale(self, calls: list[Call]) -> bool:
        return (
            self.wait_replicas == "auto"
            and any(call.name == "BUMP" for call in calls)
            and self._replicas.stale()
        )

    def _script(self, op: Call | list[Call]) -> Any:
        return self._round(op) if type(op) is list else self._round([op])[0]  # type: ignore[list-item]

    async def _ascript(self, op: Call | list[Call]) -> Any:
        return await self._around(op) if type(op) is list else (await self._around([op]))[0]  # type: ignore[list-item]

    def _round(self, calls: list[Call]) -> list[Any]:
        """Send a round of scripts (one pipeline), and return their replies in order."""
        client = self.client
        if self._replicas_stale(calls):
            self._replicas.refresh(client)
        for attempt in (0, 1):
            try:
                commands, needs = self._plan(client, calls)
                if self._single(calls):
                    return [client.execute_command(*commands[0][1:])]
                with client.pipeline(transaction=False) as p:
                    for node, *command in commands:
                        p.execute_command(*command, target_nodes=node)
                    return self._after_waits(list(p.execute()), needs)
            except _redis().exceptions.NoScriptError:
                # A new or failed-over master has not seen the scripts (they are not
                # replicated): load them on every master and try once more.
                if attempt:
                    raise
                for source in _SOURCE.values():
                    client.script_load(source)
        raise AssertionError("unreachable")

    async def _around(self, calls: list[Call]) -> list[Any]:
        """Async :meth:`_round`."""
        client = self.aclient
        for attempt in (0, 1):
            try:
                if not self._single(calls):
                    await client.initialize()  # the slot table, for the node lookups
                    if self._replicas_stale(calls):
                        await self._replicas.arefresh(client)
                commands, needs = self._plan(client, calls)
                if self._single(calls):
                    return [await client.execute_command(*commands[0][1:])]
                p = client.pipeline(transaction=False)
                for node, *command in commands:
                    p.execute_command(*command, target_nodes=node)
                return self._after_waits(list(await p.execute()), needs)
            except _redis().exceptions.NoScriptError:
                if attempt:
                    raise
                for source in _SOURCE.values():
                    await client.script_load(source)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ operations

    def _split(self, key: str, names: Sequence[str]) -> tuple[list[int], dict[int, list[int]]]:
        """Positions of ``names`` in the entry's slot, and the others grouped by slot."""
        groups = self._by_slot(names)
        return groups.pop(_place(self.namespace, key)[1], []), groups

    def _current(self, names: Sequence[str]) -> Steps[tuple[int, ...]]:
        groups = self._by_slot(names)
        replies = yield self._gens_calls(names, groups)
        return _gather(len(names), list(groups.values()), replies)

    def _read(self, key: str, names: Sequence[str]) -> Steps[Read]:
        """One round: a script per slot involved."""
        here, others = self._split(key, names)
        calls: list[Call] = [
            Call(
                "READ",
                [self._key(key), *(self._key(names[i]) for i in here)],
                [self._gen_ttl_ms, self._seed()],
            ),
            *self._gens_calls(names, others),
        ]
        replies = yield calls
        first = replies[0]
        latest = _gather(len(names), [here, *others.values()], [first[4:], *replies[1:]])
        stored_names, stamps, meta, payload = first[:4]
        if stored_names is None:
            return Read(None, latest)
        try:
            if stored_names == "\n".join(names).encode():
                entry = decode_entry(tuple(names), stamps, meta, payload)
                return Read(entry if entry.stamps == latest else None, latest)
            # A reader that does not know the entry's tags (cache.get): check its own names.
            entry = decode_entry(stored_names, stamps, meta, payload)
        except (ValueError, TypeError, UnicodeDecodeError):
            return Read(None, latest)  # garbage someone wrote into the entry: a miss
        current = yield from self._current(entry.names)
        return Read(entry if entry.stamps == current else None, latest)

    def _write(self, key: str, entry: Entry, retain: float | None, token: str) -> Steps[bool]:
        names, stamps = entry.names, entry.stamps
        here, others = self._split(key, names)
        ms = str(retain_ms(retain))
        calls: list[Call] = [
            Call(
                "WRITE",
                [self._key(key), self.lease_key(key), *(self._key(names[i]) for i in here)],
                [
                    self._gen_ttl_ms,
                    self._seed(),
                    "\n".join(names),
                    ",".join(map(str, stamps)),
                    ",".join(str(stamps[i]) for i in here),
                    encode_meta(entry),
                    entry.payload,
                    ms,
                    token,
                    self.keyspace.fills,
                    key,
                ],
            ),
        ]
        for idx in others.values():
            calls.append(
                Call(
                    "CHECK",
                    [self._key(names[i]) for i in idx],
                    [
                        self._gen_ttl_ms,
                        self._seed(),
                        ms,
                        ",".join(str(stamps[i]) for i in idx),
                    ],
                )
            )
        replies = yield calls
        # Stored only if every slot agreed; an entry stored with a stale stamp elsewhere is
        # never served (every read compares all stamps), so it needs no clean-up.
        return all(int(r) == 1 for r in replies)

    def _bump_call(self, names: Sequence[str], idx: list[int], retain: str) -> Call:
        return Call(
            "BUMP",
            [self._key(names[i]) for i in idx],
            [self._gen_ttl_ms, self._seed(), self.keyspace.invalidations, retain],
        )

    def _invalidate(self, names: Sequence[str]) -> Steps[tuple[int, ...]]:
        """A script per slot; not atomic across slots."""
        groups = self._by_slot(names)
        replies = yield [self._bump_call(names, idx, "") for idx in groups.values()]
        return _gather(len(names), list(groups.values()), replies)

    def _write_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> Steps[bool]:
        # Without cross-slot atomicity: bump the other slots first, then, on the entry's slot,
        # bump its generations and store the value only if every generation moved from exactly
        # the value the writer read to that plus one. Two writers finishing out of order then
        # cannot leave the older value valid: the later bump of either sees a moved value.
        names = entry.names
        here, others = self._split(key, names)
        ms = str(retain_ms(retain))
        new: list[str] = ["?"] * len(names)
        moved = True
        if others:
            replies = yield [self._bump_call(names, idx, ms) for idx in others.values()]
            for idx, reply in zip(others.values(), replies, strict=True):
                for i, v in zip(idx, reply, strict=True):
                    new[i] = str(int(v))
                    moved = moved and int(v) == expected[i] + 1
        call = Call(
            "BUMP",
            [self._key(key), *(self._key(names[i]) for i in here)],
            [
                self._gen_ttl_ms,
                self._seed(),
                self.keyspace.invalidations,
                ms,
                "\n".join(names),
                ",".join(new),
                ",".join(str(expected[i]) for i in here),
                "1" if moved else "0",
                encode_meta(entry),
                entry.payload,
            ],
        )
        (reply,) = yield [call]
        return int(reply[-1]) == 1

    def _stored(self, key: str) -> str:
        return self._key(key)

    def lease_key(self, key: str) -> str:
        """The lease key of an entry key: in the entry's slot, so WRITE can end it."""
        return self._key(key).partition("}")[0] + "}" + self.keyspace.lease(key)

    # ------------------------------------------------------------------ channel

    def _new_listener(self) -> Fanout:
        """One subscription per master (see :class:`~freshlink.backends.channel.Fanout`)."""
        return Fanout(
            self._masters,
            self._make_node_pubsub,
            **self._channel_options(),
            on_reset=self._dispatch_reset,
        )

    def _masters(self) -> list[tuple[str, int]]:
        """The masters that own slots now, asking the nodes the client knows in turn."""
        return self._replicas.read(self.client)

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
