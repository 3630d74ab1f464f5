"""The benchmark modules run: one tiny scenario of each, minimal rounds, no timing asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# ``benchmarks`` is a folder of the repository, not part of the installed package.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import __main__ as suite  # noqa: E402
from benchmarks import (  # noqa: E402
    _peers,
    bench_cluster,
    bench_fanout,
    bench_local,
    bench_memory,
    bench_redis,
    bench_stampede,
    bench_throughput,
    compare,
)
from benchmarks._harness import Figure, interleaved, table  # noqa: E402
from benchmarks._monitor import Monitor  # noqa: E402
from benchmarks._plots import draw  # noqa: E402

# cashews 7.6 and dogpile.cache 1.5 call redis-py methods that redis-py 8 deprecates
# (close(), setex()); not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]


def test_harness_interleaves_and_computes_per_round_ratios() -> None:
    samples = interleaved([("a", lambda: None), ("b", lambda: None)], rounds=2, target=0.001)
    assert [len(v) for v in samples.values()] == [2, 2]
    md = table({"a": [1.0, 2.0], "b": [2.0, 6.0]}, "a", also=["b"])
    assert "| b | 4.00 | 2.00..6.00 | 2.50 | 1.00 |" in md


@pytest.mark.redis
def test_local_hits_tiny() -> None:
    section = bench_local.collect(rounds=1, target=0.001)
    assert "freshlink memory://" in section.markdown
    assert "freshlink Redis, bounded L1" in section.markdown
    assert "cashews mem" in section.markdown
    assert section.data["l1_vs_goal"] > 0
    assert section.data["l1_redis_vs_goal"] > 0


@pytest.mark.redis
def test_every_peer_builds_and_serves_the_value(redis_url: str) -> None:
    for pid in ("ct-cond", "dogpile-redis", "flask-redis", "fl-bounded"):
        b = _peers.build(pid, url=redis_url, ns="t-" + pid)
        assert b.call(3) == b.call(3) == _peers.value(3)
        b.close()
    with pytest.raises(_peers.Unavailable, match=r"7\.4"):
        _peers.build("redis-csc", url=redis_url)  # the test server is older than 7.4


@pytest.mark.redis
def test_memory_tiny() -> None:
    section = bench_memory.collect(n=20, rounds=1)
    assert "bytes per entry" in section.markdown


@pytest.mark.redis
def test_redis_hits_and_counted_commands(redis_url: str) -> None:
    hits = bench_redis.hit_tables(redis_url, rounds=1, target=0.001)
    assert "freshlink strict, no L1 (L2 hit)" in hits.markdown
    counted = bench_redis.count_commands(redis_url, 2)
    # Exact counts from MONITOR: a warm strict hit is one EVALSHA; a bounded L1 hit is none.
    # (sent per hit, sent per miss, run inside scripts per hit, per miss)
    assert counted.data["commands"]["fl-strict"] == (1, 2, 1, 6)  # a key, 2 tags, all new
    assert counted.data["commands"]["fl-bounded"][0] == 0
    assert counted.data["commands"]["raw"] == (1, 2, 0, 0)
    assert "miss: ≤ 2 round trips" in suite.goals({"redis": [counted]})


@pytest.mark.redis
def test_monitor_counts_a_window(redis_url: str) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    with Monitor(redis_url) as mon:
        w = mon.window(lambda: (r.set("a", 1), r.get("a"), r.get("b")), match="a")
    assert dict(w.client) == {"SET": 1, "GET": 1}
    r.close()


@pytest.mark.cluster
def test_cluster_quick() -> None:
    # Its own servers (single, cluster, Sentinel), the --quick sizes: what CI's report runs.
    section = bench_cluster.collect(quick=True)
    counted = section.data["cluster_commands"]
    # Exact counts from MONITOR on every master: a strict hit is one EVALSHA per slot
    # involved, sent to as many masters as the row says; a bounded L1 hit sends nothing.
    for label, scripts, masters in (
        (bench_cluster.S0, 1, None),
        (bench_cluster.S2, 1, None),
        (bench_cluster.C0, 1, 1),
        (bench_cluster.C1, 3, 1),
        (bench_cluster.C3, 3, 3),
    ):
        hit, _miss = counted[label]
        assert hit.client["EVALSHA"] == scripts, label
        if masters is not None:
            assert hit.nodes == masters, label
    assert counted[bench_cluster.S0][0].rounds == counted[bench_cluster.C0][0].rounds == 1
    l1 = next(v for k, v in counted.items() if k.startswith("freshlink bounded L1, cluster"))
    assert l1[0].total() == 0
    assert l1[0].rounds == 0
    assert "freshlink strict, Sentinel, 2 tags" in section.markdown
    assert "Where the cluster's extra cost comes from" in section.markdown


@pytest.mark.redis
def test_invalidation_tiny(redis_url: str) -> None:
    start, ack = bench_redis.propagation(redis_url, 5)
    assert len(start) == len(ack) == 5


@pytest.mark.redis
def test_stampede_tiny() -> None:
    section = bench_stampede.collect(
        1,
        shapes={"2 processes x 2 threads": (2, 2), "3 threads in 1 process": (1, 3)},
        peers=("ct-cond", "cashews-redis-lock"),
    )
    # One loader run across processes, and each shape's numbers under its own name.
    assert section.data["stampede"]["2x2"]["loads"] == 1
    assert section.data["stampede"]["1x3"]["loads"] == 1
    assert 0 < section.data["stampede"]["2x2"]["server_commands"] <= 100
    assert "| cachetools.cached(TTLCache, condition=Condition()) | 2 |" in section.markdown
    assert "cashews redis @cache(lock=True)" in section.markdown


@pytest.mark.redis
def test_fanout_tiny() -> None:
    # Fills before any invalidation: no reader has a hot key to refill, so nobody waits.
    cells = ((0, 0, 1), (0, 100, 1), (100, 0, 1), (100, 0, 10))
    section = bench_fanout.collect(True, ns_list=(2,), cells=cells, window=0.5, subs=(0, 64))
    rows = section.data["fanout"]["rows"]
    assert [(r["n"], r["rate"], r["fills"], r["batch"]) for r in rows] == [(2, *c) for c in cells]
    quiet, fills, inv, batched = rows
    assert all(r["subscribers"] == 2 for r in rows)  # the readers; the drivers never subscribe
    assert quiet["inv_msgs_s"] == quiet["fill_msgs_s"] == 0
    # A fill nobody waits for sends no message to anyone.
    assert fills["fill_sent_s"] > 0
    assert fills["fill_msgs_max"] == 0
    # Every invalidation reaches every process (broadcast): about what was sent, per reader.
    assert 0.5 * inv["inv_sent_s"] <= inv["inv_msgs_s"] <= 1.5 * inv["inv_sent_s"]
    # Ten tags per call: one message per call.
    assert batched["inv_msgs_s"] <= 0.2 * batched["inv_sent_s"]
    assert "| 2 | R=100, F=0 (" in section.markdown
    assert [f.name for f in section.figures] == ["fanout_p99", "fanout_publish"]
    assert [n for n, _ in section.data["fanout"]["publish"]] == [0, 64]  # CPU: not asserted


@pytest.mark.redis
def test_throughput_tiny() -> None:
    section = bench_throughput.collect(1, 0.2, 0.05, peers=("fl-bounded",), processes=1)
    assert "freshlink bounded L1" in section.markdown


def test_plot_is_written(tmp_path: Path) -> None:
    fig = Figure("t", "title", "ns", [("freshlink x", 2.0, 1.0, 3.0), ("peer", 4.0, 4.0, 5.0)])
    assert draw(fig, tmp_path).stat().st_size > 1000


def test_entry_point_writes_results(tmp_path: Path) -> None:
    suite.main(["--quick", "--only", "local", "--out", str(tmp_path)])
    text = (tmp_path / "results.md").read_text()
    assert "L1 hit, sync" in text
    assert "freshlink against its goals" in text
    assert (tmp_path / "l1_sync.png").exists()


@pytest.mark.redis
def test_compare_times_two_trees_side_by_side(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tree against itself, one short round: every hot-path row, wall and CPU columns.
    monkeypatch.setattr(compare, "CALLS", {k: max(n // 100, 2) for k, n in compare.CALLS.items()})
    text = compare.compare(ROOT, rounds=1)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split("|")[1].strip() for r in rows[1:]] == list(compare.CALLS)
    assert all(r.count("x |") == 2 for r in rows[1:]), rows  # two after/before ratios each


@pytest.mark.redis
def test_outbox_cost_tiny() -> None:
    from benchmarks import bench_outbox

    text = bench_outbox.main(["--rounds", "1", "--number", "3"])
    assert "SQLite: + invalidate through the outbox" in text
    assert "PostgreSQL" in text  # measured, or said not to be
