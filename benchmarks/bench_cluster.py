"""Redis Cluster (and Sentinel) rows next to single Redis: hit cost, commands, round trips.

    python -m benchmarks.bench_cluster [--quick] [--no-sentinel]

Starts, in parallel and on loopback, its own redis-server, a local Redis Cluster (3 masters, 3
replicas) and a Sentinel setup (master, replica, 3 Sentinels). Then, in one process:

* L2 hit cost: every case timed once per round, rounds interleaved; a row shows the median,
  the spread (min..max) and the median of per-round ratios against raw redis-py ``GET`` +
  ``json.loads`` on the single server (and against raw ``RedisCluster.get`` + ``json.loads``);
* Redis commands per warm hit and per miss, counted by ``MONITOR`` on every master (summed),
  and the round trips the client waited for (request/response rounds on its connections);
* the background traffic of a bounded-L1 cache's channel while nobody calls it;
* server time per hit, from ``INFO commandstats`` on each master (reset before each round):
  the scripts' own time, and how much of it the ``INFO`` calls the cluster scripts make to
  learn their node's identity take; then that identity read alone, in probe scripts.

The cached function is the suite's: ``key="loan:{k}"``, with no tags or with the tags
``loan:{k}`` and ``user:42``. On the cluster a tag's generation hashes to its own slot, so the
namespace of each 2-tag case is chosen so that the tags land where the row says (the two
other masters, or the entry's master); an entry and its own-key generation share a slot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster, key_slot

from benchmarks._harness import (
    Section,
    environment,
    interleaved,
    md_table,
    med_spread,
    num,
    table,
)
from benchmarks._monitor import Monitor, Window
from benchmarks._peers import value
from freshlink import Cache, Local
from freshlink.backends.cluster import _place
from freshlink.keyspace import Keyspace
from freshlink.testing import RedisServer
from freshlink.testing.cluster import RedisClusterSetup, RedisSentinelSetup

TTL = 600.0
TAGS = ("loan:{k}", "user:42")
FLOOR = "raw redis-py GET + json.loads (single Redis)"
CFLOOR = "raw RedisCluster.get + json.loads (cluster)"
PIPE = "raw RedisCluster pipeline: GET + 2 GETs on the 2 other masters (cluster)"
S0 = "freshlink strict, single Redis, 0 tags"
S2 = "freshlink strict, single Redis, 2 tags"
C0 = "freshlink strict, cluster, 0 tags (1 slot, 1 master)"
C1 = "freshlink strict, cluster, 2 tags on the entry's master (3 slots, 1 master)"
C3 = "freshlink strict, cluster, 2 tags on the 2 other masters (3 slots, 3 masters)"


def loan(k: int) -> dict[str, Any]:
    """The loader every freshlink case caches (the suite's value)."""
    return value(k)


@dataclass
class Case:
    """One cached function (or raw client) ready to call as ``call(k)``."""

    label: str
    call: Callable[[int], Any]
    close: Callable[[], Any]
    where: str  # "single", "cluster" or "sentinel"
    cache: Cache | None = None
    tags: int = 0
    counted: bool = True  # in the commands and server-time tables
    placement: str = ""


# ---------------------------------------------------------------------------- setups


@contextlib.contextmanager
def servers(sentinel: bool) -> Iterator[tuple[RedisServer, RedisClusterSetup, Any]]:
    """A single redis-server, a cluster and (optionally) a Sentinel setup, started in parallel."""
    single = RedisServer()
    cluster = RedisClusterSetup()
    sent = RedisSentinelSetup() if sentinel else None
    starts: list[Callable[[], Any]] = [single.start, cluster.start]
    if sent is not None:
        starts.append(sent.start)
    try:
        with ThreadPoolExecutor(len(starts)) as pool:
            for fut in [pool.submit(s) for s in starts]:
                fut.result()
        yield single, cluster, sent
    finally:
        single.close()
        cluster.close()
        if sent is not None:
            sent.close()


def _cluster_client(cluster: RedisClusterSetup) -> RedisCluster:
    return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in cluster.ports])


def _node_of(client: RedisCluster, slot: int) -> int:
    return int(client.nodes_manager.get_node_from_slot(slot).port)


def _layout(ns: str, fkey: str, tags: Sequence[str]) -> list[int]:
    """Slots of the entry, then of its generations (own key, tags), under namespace ``ns``."""
    space = Keyspace(ns)
    names = [space.entry(fkey), *space.names(fkey, tags)]
    return [_place(ns, n)[1] for n in names]


def pick_namespace(client: RedisCluster, fkey: str, tags: Sequence[str], spread: bool) -> str:
    """A namespace whose tag generations sit on the other masters (or all on the entry's)."""
    for i in range(1000):
        ns = f"cl{i}"
        slots = _layout(ns, fkey, tags)
        nodes = [_node_of(client, s) for s in slots]
        tag_nodes = nodes[2:]
        if len(set(slots[2:]) | {slots[0]}) != len(slots) - 1:
            continue  # two generations in one slot: not the case being measured
        if spread and len({nodes[0], *tag_nodes}) == 1 + len(tag_nodes):
            return ns
        if not spread and set(tag_nodes) == {nodes[0]}:
            return ns
    raise RuntimeError("no namespace gives the placement asked for")


def describe(client: RedisCluster, cache: Cache, f: Any, k: int = 7) -> str:
    """Where the entry and each generation of ``f(k)`` live: slot and master port."""
    ns = cache.namespace
    key, tags = f.key(k), f.tags(k)
    slots = _layout(ns, key, tags)
    parts = [f"entry+own key: slot {slots[0]} on :{_node_of(client, slots[0])}"]
    for tag, slot in zip(tags, slots[2:], strict=True):
        parts.append(f"tag {tag}: slot {slot} on :{_node_of(client, slot)}")
    return "; ".join(parts)


def _freshlink(url: str, ns: str, tags: int, local: Any = None) -> tuple[Cache, Any]:
    cache = Cache(url, namespace=ns, local=local)
    f = cache.cached(ttl=TTL, key="loan:{k}", tags=list(TAGS[:tags]))(loan)
    return cache, f


def bounded(url: str, where: str) -> Case:
    """freshlink bounded L1 (2 tags), its channel up; not warm yet."""
    cache, f = _freshlink(url, "l1", 2, Local(max_staleness=0.1))
    if not cache.backend.listener.alive.wait(10):  # type: ignore[attr-defined]
        cache.close()
        raise RuntimeError(f"freshlink's invalidation channel did not come up ({where})")
    label = f"freshlink bounded L1, {'cluster' if where == 'cluster' else 'single Redis'}, 2 tags"
    return Case(label + " (L1 hit, in-process)", f, cache.close, where, cache, 2)


def _is_l1(case: Case) -> bool:
    return case.cache is not None and case.cache.near is not None


def _warm(case: Case) -> Case:
    case.call(7)
    case.call(7)
    return case


def _raw(client: Any, prefix: str) -> Callable[[int], Any]:
    """The one-round-trip cache-aside floor: GET + json.loads, SET on a miss."""

    def get(k: int) -> Any:
        b = client.get(f"{prefix}:{k}")
        if b is None:
            v = loan(k)
            client.set(f"{prefix}:{k}", json.dumps(v), ex=int(TTL))
            return v
        return json.loads(b)

    return get


def _raw_pipeline(client: RedisCluster, prefix: str) -> Callable[[int], Any]:
    """Raw reference: the entry's GET and two GETs on the two other masters, one pipeline."""
    home = _node_of(client, key_slot(f"{prefix}:7".encode()))
    others: dict[int, str] = {}
    for i in range(10_000):
        name = f"{prefix}:other:{i}"
        node = _node_of(client, key_slot(name.encode()))
        if node != home and node not in others:
            others[node] = name
            if len(others) == 2:
                break
    extra = list(others.values())
    for name in extra:
        client.set(name, "1", ex=int(TTL))

    def get(k: int) -> Any:
        with client.pipeline() as p:
            p.get(f"{prefix}:{k}")
            for name in extra:
                p.get(name)
            b = p.execute()[0]
        if b is None:
            v = loan(k)
            client.set(f"{prefix}:{k}", json.dumps(v), ex=int(TTL))
            return v
        return json.loads(b)

    return get


def build_cases(
    single: RedisServer,
    cluster: RedisClusterSetup,
    sent: Any,
    craw: RedisCluster,
    cases: list[Case],
) -> None:
    """Every case, into ``cases`` (the caller closes them), warm: k=7 filled and read once."""
    r = redis.Redis.from_url(single.url)
    cases.append(Case(FLOOR, _raw(r, "raw"), r.close, "single"))
    cases.append(Case(CFLOOR, _raw(craw, "craw"), lambda: None, "cluster"))
    cases.append(Case(PIPE, _raw_pipeline(craw, "cpipe"), lambda: None, "cluster"))
    for tags, label in ((0, S0), (2, S2)):
        cache, f = _freshlink(single.url, f"s{tags}", tags)
        cases.append(Case(label, f, cache.close, "single", cache, tags))
    # On the cluster an entry's slot depends on its key (the function, its spec and the
    # arguments), a tag's slot on the namespace too: pick namespaces for the rows' placements.
    probe, pf = _freshlink("memory://", "probe", 2)
    fkey, ftags = pf.key(7), list(pf.tags(7))
    probe.close()
    cluster_rows = [
        (0, "cl-0", C0),
        (2, pick_namespace(craw, fkey, ftags, spread=False), C1),
        (2, pick_namespace(craw, fkey, ftags, spread=True), C3),
    ]
    for tags, ns, label in cluster_rows:
        cache, f = _freshlink(cluster.url, ns, tags)
        case = Case(label, f, cache.close, "cluster", cache, tags)
        case.placement = describe(craw, cache, f)
        cases.append(case)
    cases.append(bounded(cluster.url, "cluster"))
    if sent is not None:
        for tags in (0, 2):
            cache, f = _freshlink(sent.url, f"se{tags}", tags)
            label = f"freshlink strict, Sentinel, {tags} tags"
            cases.append(Case(label, f, cache.close, "sentinel", cache, tags, counted=False))
    for c in cases:
        _warm(c)


# ---------------------------------------------------------------------------- hit cost


def hit_table(cases: list[Case], rounds: int, target: float) -> tuple[str, dict[str, list[float]]]:
    """L2 hit cost (µs per call), interleaved rounds, ratios per round."""
    timed = [(c.label, lambda f=c.call: f(7)) for c in cases]
    samples = interleaved(timed, rounds=rounds, target=target)
    us = {k: [x / 1000 for x in v] for k, v in samples.items()}
    md = table(
        us,
        FLOOR,
        unit="µs",
        title="Hit cost: Redis Cluster and Sentinel vs single Redis, sync (µs per call)",
        also=[CFLOOR],
    )
    return md, us


# ---------------------------------------------------------------------------- commands


class RoundTrips:
    """Request/response rounds this thread's redis-py connections waited for.

    A round starts with the first command sent after a reply was read (or at the start): a
    cluster pipeline writing to three masters and then reading their replies is one round;
    a lookup sent (and answered) before it is one more.
    """

    def __init__(self) -> None:
        self.rounds = 0
        self._thread: int | None = None
        self._reading = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[RoundTrips]:
        from redis.connection import AbstractConnection

        send, read = AbstractConnection.send_packed_command, AbstractConnection.read_response

        def counted_send(conn: Any, *args: Any, **kw: Any) -> Any:
            if threading.get_ident() == self._thread and self._reading:
                self.rounds += 1
                self._reading = False
            return send(conn, *args, **kw)

        def counted_read(conn: Any, *args: Any, **kw: Any) -> Any:
            if threading.get_ident() == self._thread:
                self._reading = True
            return read(conn, *args, **kw)

        AbstractConnection.send_packed_command = counted_send  # type: ignore[method-assign]
        AbstractConnection.read_response = counted_read  # type: ignore[method-assign]
        try:
            yield self
        finally:
            AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
            AbstractConnection.read_response = read  # type: ignore[method-assign]

    def count(self, fn: Callable[[], Any]) -> int:
        """Rounds ``fn`` waited for (in this thread)."""
        self.rounds, self._reading, self._thread = 0, True, threading.get_ident()
        try:
            fn()
        finally:
            self._thread = None
        return self.rounds


def windows(monitors: Sequence[Monitor], fn: Callable[[], Any]) -> list[Window]:
    """Run ``fn`` inside a MONITOR window on every server at once; one window per server."""
    out: list[Window] = []

    def nest(i: int) -> None:
        if i == len(monitors):
            fn()
        else:
            out.append(monitors[i].window(lambda: nest(i + 1)))

    nest(0)
    return out


@dataclass
class Counted:
    """What ``n`` calls sent, summed over the servers watched."""

    n: int
    client: dict[str, float] = field(default_factory=dict)
    lua: dict[str, float] = field(default_factory=dict)
    pings: int = 0
    nodes: int = 0  # servers that ran a data command (not a key lookup)
    rounds: float = 0.0

    @classmethod
    def of(cls, ws: Sequence[Window], n: int, rounds: int) -> Counted:
        c = cls(n, rounds=rounds / n)
        for w in ws:
            for cmd, x in w.client.items():
                c.client[cmd] = c.client.get(cmd, 0) + x / n
            for cmd, x in w.lua.items():
                c.lua[cmd] = c.lua.get(cmd, 0) + x / n
            c.pings += w.pings
            c.nodes += any(cmd != "COMMAND" for cmd in w.client)
        return c

    @staticmethod
    def _fmt(d: dict[str, float]) -> str:
        if not d:
            return "none"
        ranked = sorted(d.items(), key=lambda x: (-x[1], x[0]))
        return ", ".join(f"{cmd} {count:g}" for cmd, count in ranked)

    def total(self) -> float:
        return sum(self.client.values())

    def by_command(self) -> str:
        return self._fmt(self.client)

    def inside(self) -> str:
        return self._fmt(self.lua)


def count_rows(
    cases: Sequence[Case], monitors: dict[str, list[Monitor]], n: int
) -> tuple[list[list[str]], dict[str, tuple[Counted, Counted]]]:
    """Commands (and round trips) per warm hit and per miss, by MONITOR on every master."""
    rows = []
    data: dict[str, tuple[Counted, Counted]] = {}
    rt = RoundTrips()
    with rt.installed():
        for case in cases:
            if not case.counted:
                continue
            f = case.call
            rounds: list[int] = []

            def hits(f: Callable[[int], Any] = f, rounds: list[int] = rounds) -> None:
                rounds.append(rt.count(lambda: [f(7) for _ in range(n)]))

            def misses(f: Callable[[int], Any] = f, rounds: list[int] = rounds) -> None:
                rounds.append(rt.count(lambda: [f(10_000 + i) for i in range(n)]))

            h = Counted.of(windows(monitors[case.where], hits), n, rounds[0])
            m = Counted.of(windows(monitors[case.where], misses), n, rounds[1])
            data[case.label] = (h, m)
            notes = []
            if h.lua or m.lua:
                notes.append(
                    f"inside scripts: {sum(h.lua.values()):g} per hit ({h.inside()}); "
                    f"{sum(m.lua.values()):g} per miss"
                )
            lookups = h.client.get("COMMAND", 0) or m.client.get("COMMAND", 0)
            if lookups:
                notes.append(
                    "COMMAND = COMMAND GETKEYS: redis-py's cluster pipeline asks its default "
                    "node for the keys of every EVALSHA it routes, one blocking round trip each"
                )
            if _is_l1(case):
                notes.append(
                    "its channel's background traffic (PINGs, CLUSTER NODES) is in the next "
                    "table; misses include what of it fell in the window"
                )
            if case.placement:
                notes.append(case.placement)
            rows.append(
                [
                    case.label,
                    f"{h.total():g}",
                    h.by_command(),
                    f"{h.rounds:g}" + (f" ({h.nodes})" if case.where == "cluster" else ""),
                    f"{m.total():g}",
                    m.by_command(),
                    f"{m.rounds:g}",
                    "; ".join(notes),
                ]
            )
    return rows, data


def commands_table(rows: list[list[str]], n: int) -> str:
    return md_table(
        [
            "case",
            "per warm hit",
            "by command",
            "round trips per hit (masters that ran data commands)",
            "per miss",
            "by command",
            "round trips per miss",
            "notes",
        ],
        rows,
        title=(
            "Commands per warm hit and per miss, cluster vs single Redis (MONITOR on every "
            f"master, summed; {n} calls each), and the round trips the client waited for"
        ),
    )


def idle_traffic(cases: Sequence[Case], monitors: dict[str, list[Monitor]], seconds: float) -> str:
    """What a bounded-L1 cache sends while nobody calls it (its channel), per second."""
    rows = []
    for case in cases:
        ws = windows(monitors[case.where], lambda: time.sleep(seconds))
        c = Counted.of(ws, 1, 0)
        per_s = {cmd: x / seconds for cmd, x in c.client.items()}
        if c.pings:
            per_s["PING"] = per_s.get("PING", 0) + c.pings / seconds
        total = sum(per_s.values())
        ranked = sorted(per_s.items(), key=lambda x: -x[1])
        by_cmd = ", ".join(f"{cmd} {x:.0f}" for cmd, x in ranked)
        rows.append([case.label.replace(" (L1 hit, in-process)", ""), f"{total:.0f}", by_cmd])
    return md_table(
        ["case", "commands per second, idle", "by command"],
        rows,
        title=f"Background traffic of one bounded-L1 cache's channel, idle ({seconds:g} s window)",
    )


# ---------------------------------------------------------------------------- server time


def _commandstats(port: int) -> dict[str, dict[str, float]]:
    r = redis.Redis(port=port)
    try:
        return {k.removeprefix("cmdstat_"): v for k, v in r.info("commandstats").items()}
    finally:
        r.close()


def _resetstat(port: int) -> None:
    r = redis.Redis(port=port)
    try:
        r.config_resetstat()
    finally:
        r.close()


@dataclass
class ServerTime:
    """Per-round samples of one case's server-side cost."""

    scripts: list[float] = field(default_factory=list)  # EVALSHA per hit
    per_hit: list[float] = field(default_factory=list)  # µs in EVALSHA, summed over masters
    per_script: list[float] = field(default_factory=list)  # µs per EVALSHA
    info_per_script: list[float] = field(default_factory=list)  # µs in INFO, per EVALSHA
    info_calls: list[float] = field(default_factory=list)  # INFO calls per EVALSHA
    lookups: list[float] = field(default_factory=list)  # µs in COMMAND GETKEYS per hit


def server_time(
    cases: list[Case], single: RedisServer, cluster: RedisClusterSetup, n: int, rounds: int
) -> tuple[str, dict[str, ServerTime]]:
    """Server µs per warm hit from INFO commandstats (reset before each case, every round)."""
    ports = {"single": [single.port], "cluster": [m.port for m in cluster.masters()]}
    chosen = [c for c in cases if c.counted and c.cache is not None and c.cache.near is None]
    out = {c.label: ServerTime() for c in chosen}
    for _ in range(rounds):
        for c in chosen:
            for p in ports[c.where]:
                _resetstat(p)
            for _ in range(n):
                c.call(7)
            calls = usec = info_calls = info_usec = lookup_usec = 0.0
            for p in ports[c.where]:
                st = _commandstats(p)
                calls += st.get("evalsha", {}).get("calls", 0)
                usec += st.get("evalsha", {}).get("usec", 0)
                info_calls += st.get("info", {}).get("calls", 0)
                info_usec += st.get("info", {}).get("usec", 0)
                lookup_usec += st.get("command|getkeys", {}).get("usec", 0)
            t = out[c.label]
            t.scripts.append(calls / n)
            t.per_hit.append(usec / n)
            t.per_script.append(usec / calls if calls else float("nan"))
            t.info_per_script.append(info_usec / calls if calls else float("nan"))
            t.info_calls.append(info_calls / calls if calls else float("nan"))
            t.lookups.append(lookup_usec / n)
    rows = []
    for label, t in out.items():
        hit, hit_spread = med_spread(t.per_hit)
        script, script_spread = med_spread(t.per_script)
        info, info_spread = med_spread(t.info_per_script)
        share = statistics.median(
            i / s if s else float("nan")
            for i, s in zip(t.info_per_script, t.per_script, strict=True)
        )
        rows.append(
            [
                label,
                f"{statistics.median(t.scripts):g}",
                f"{hit} ({hit_spread})",
                f"{script} ({script_spread})",
                f"{statistics.median(t.info_calls):g}",
                f"{info} ({info_spread})",
                f"{share:.0%}",
                num(statistics.median(t.lookups)),
            ]
        )
    md = md_table(
        [
            "case",
            "scripts per hit",
            "server µs per hit (spread)",
            "µs per script (spread)",
            "INFO calls per script",
            "µs in INFO per script (spread)",
            "INFO share",
            "COMMAND GETKEYS µs per hit",
        ],
        rows,
        title=(
            f"Server time per warm hit (INFO commandstats on every master, {n} hits per round, "
            f"{rounds} rounds; median (min..max))"
        ),
    )
    return md, out


#: Scripts that isolate what the cluster scripts pay to learn their node's identity.
IDENTITY_PROBES = (
    ("empty script (`return 1`)", "return 1"),
    (
        "`INFO server` + `INFO replication`",
        "redis.call('INFO', 'server') redis.call('INFO', 'replication') return 1",
    ),
    (
        "the cluster scripts' `me()`: both INFOs and a plain `string.find` in each",
        "__COMMON__\nme()\nreturn 1",
    ),
)


def identity_table(
    single: RedisServer, master: int, n: int, rounds: int
) -> tuple[str, dict[tuple[str, str], float]]:
    """EVALSHA µs per call of the identity probes, on single Redis and on a cluster master."""
    from freshlink.backends import _cluster_scripts

    common = getattr(_cluster_scripts, "_COMMON", None)
    probes = [(label, src) for label, src in IDENTITY_PROBES if common or "__COMMON__" not in src]
    samples: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for label, src in probes:
            src = src.replace("__COMMON__", common or "")
            for port in (single.port, master):
                r = redis.Redis(port=port)
                try:
                    sha = r.script_load(src)
                    r.config_resetstat()
                    with r.pipeline(transaction=False) as p:
                        for _ in range(n):
                            p.evalsha(sha, 0)
                        p.execute()
                    st = _commandstats(port)["evalsha"]
                finally:
                    r.close()
                samples.setdefault((label, port), []).append(st["usec"] / st["calls"])
    rows = []
    medians: dict[tuple[str, str], float] = {}
    for i, (label, _) in enumerate(probes):
        cells = []
        for where, port in (("single", single.port), ("cluster", master)):
            median, spread = med_spread(samples[(label, port)])
            cells.append(f"{median} ({spread})")
            medians[(IDENTITY_PROBES[i][0], where)] = statistics.median(samples[(label, port)])
        rows.append([label, *cells])
    md = md_table(
        ["script", "single Redis µs per call (spread)", "cluster master µs per call (spread)"],
        rows,
        title=(
            f"The node identity inside a script, measured alone (INFO commandstats, {n} "
            f"EVALSHA per round, {rounds} rounds)"
        ),
    )
    return md, medians


# ---------------------------------------------------------------------------- the note


def note(
    us: dict[str, list[float]],
    counted: dict[str, tuple[Counted, Counted]],
    stime: dict[str, ServerTime],
    ident: dict[tuple[str, str], float],
) -> str:
    """Where the cluster's extra cost comes from, in this run's numbers."""

    def med(label: str) -> str:
        return num(statistics.median(us[label])) if label in us else "n/a"

    lines = ["**Where the cluster's extra cost comes from (this run):**", ""]
    lines.append(
        f"- The cluster client: raw `RedisCluster.get` costs {med(CFLOOR)} µs against "
        f"{med(FLOOR)} µs for `Redis.get` (slot and node lookup in redis-py); a raw cluster "
        f"pipeline of 3 GETs on 3 masters costs {med(PIPE)} µs, all of it one round trip."
    )
    if S0 in stime and C0 in stime:
        single, one = stime[S0], stime[C0]
        empty, me = (
            ident.get((IDENTITY_PROBES[0][0], "cluster")),
            ident.get((IDENTITY_PROBES[2][0], "cluster")),
        )
        alone = (
            f"; measured alone, the identity read (`me()`: both INFOs and a plain find in "
            f"each) costs {num(me)} µs per script against {num(empty)} µs for an "
            "empty script"
            if me is not None and empty is not None
            else ""
        )
        lines.append(
            f"- Server time: READ takes {num(statistics.median(single.per_script))} µs on "
            f"single Redis and {num(statistics.median(one.per_script))} µs on a cluster "
            f"master, {num(statistics.median(one.info_per_script))} µs of it inside its "
            f"{statistics.median(one.info_calls):g} `INFO` calls{alone}. Every cluster script "
            "reads the identity again, so a hit with tags on other slots pays it once per slot."
        )
    if C3 in counted and C1 in counted:
        h3, h1 = counted[C3][0], counted[C1][0]
        lines.append(
            f"- Tags on other slots: one more script per slot ({h3.client.get('EVALSHA', 0):g} "
            f"EVALSHA per hit instead of 1), pipelined to {h1.nodes} master when the tags "
            f"share the entry's master and to {h3.nodes} when they do not. freshlink strict: "
            f"{med(C0)} µs with 0 tags, {med(C1)} µs with 2 tags on the entry's master, "
            f"{med(C3)} µs on 3 masters (single Redis: {med(S0)} and {med(S2)} µs)."
        )
        if C1 in stime and C3 in stime:
            apart = statistics.median(stime[C3].per_script)
            together = statistics.median(stime[C1].per_script)
            if apart > 1.2 * together:
                lines.append(
                    f"- A script takes {num(apart)} µs when the 3 masters run theirs at the "
                    f"same moment and {num(together)} µs when one master runs all 3: here "
                    f"{os.cpu_count()} CPUs are shared by the 3 masters and the client, so the "
                    "3-master server time is inflated by CPU contention."
                )
        lookups = h3.client.get("COMMAND", 0)
        if lookups:
            lines.append(
                f"- redis-py {redis.__version__}'s sync cluster pipeline sends `COMMAND GETKEYS` "
                f"to its default node for every EVALSHA it routes, one blocking round trip "
                f"each: {lookups:g} per 2-tag hit before the pipelined round, {h3.rounds:g} "
                "round trips in all. A lone EVALSHA (0 tags) is routed without it."
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- entry points


def collect(quick: bool, sentinel: bool = True) -> Section:
    """Every table (servers started and stopped here); data: what MONITOR counted."""
    rounds, target = (5, 0.02) if quick else (15, 0.1)
    n_count, idle = (20, 0.5) if quick else (100, 2.0)
    n_server, server_rounds = (200, 3) if quick else (1000, 7)
    with servers(sentinel) as (single, cluster, sent), contextlib.ExitStack() as stack:
        craw = _cluster_client(cluster)
        stack.callback(craw.close)
        cases: list[Case] = []
        stack.callback(lambda: [c.close() for c in cases])
        build_cases(single, cluster, sent, craw, cases)
        hits, us = hit_table(cases, rounds, target)
        # A bounded-L1 cache's channel talks to the servers all the time: closed now, and a
        # new one counted after the strict rows, so that their counts are exact.
        for c in [c for c in cases if _is_l1(c)]:
            c.close()
            cases.remove(c)
        stime_md, stime = server_time(cases, single, cluster, n_server, server_rounds)
        masters = [m.port for m in cluster.masters()]
        ident_md, ident = identity_table(single, masters[0], n_server * 5, server_rounds)
        monitors = {
            "single": [stack.enter_context(Monitor(single.url))],
            "cluster": [stack.enter_context(Monitor(f"redis://127.0.0.1:{p}/0")) for p in masters],
        }
        rows, counted = count_rows(cases, monitors, n_count)
        l1 = [bounded(single.url, "single"), bounded(cluster.url, "cluster")]
        cases += l1
        for c in l1:
            _warm(c)
        more, more_counted = count_rows(l1[1:], monitors, n_count)
        counted.update(more_counted)
        commands = commands_table(rows + more, n_count)
        background = idle_traffic(l1, monitors, idle)
    md = "\n\n".join(
        [hits, note(us, counted, stime, ident), commands, background, stime_md, ident_md]
    )
    return Section(md, data={"cluster_commands": counted, "cluster_hit_us": us})


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer, shorter rounds (CI)")
    ap.add_argument("--no-sentinel", action="store_true", help="skip the Sentinel rows")
    args = ap.parse_args(argv)
    out = "\n\n".join([environment(), collect(args.quick, not args.no_sentinel).markdown])
    print(out)
    return out


if __name__ == "__main__":
    main()
