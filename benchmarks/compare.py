"""Before/after: freshlink's hot paths from two trees, timed side by side in one run.

``python -m benchmarks.compare --baseline DIR [--rounds N]`` times the L1 hit (memory:// and
Redis bounded), the L2 hit (Redis strict, sync and async; also with Redis's reply canned, so
that only freshlink's own Python runs) and the miss (load + store) of the
tree this module belongs to and of the tree at ``DIR`` (a checkout, e.g. made with
``git worktree add /tmp/before <rev>``), each in its own worker process against one
loopback ``redis-server``. Rounds are interleaved (before, after, after, before, ...), so a
busy patch of the machine hits both sides alike; the table shows medians and the median of the
per-round after/before ratios, for wall time and for the calling process's CPU time (the
library's own cost, without the wait for Redis). It reports, it never fails on a timing.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks._harness import md_table, num

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_compare_worker.py"
#: Calls per sample, per case: about 50-200 ms each on a 2-core machine. Round trips vary
#: more than in-process hits: shorter samples made the L2 rows drift by ±10% between runs.
CALLS = {
    "L1 hit, memory://": 100_000,
    "L1 hit, Redis bounded": 100_000,
    "L2 hit, Redis strict (sync)": 3_000,
    "L2 hit, Redis strict (async)": 1_500,
    "miss, Redis strict (load + store)": 600,
    "L2 hit, canned reply (sync)": 20_000,
    "L2 hit, canned reply (async)": 10_000,
}


class Worker:
    """One tree's worker process."""

    def __init__(self, src: Path, url: str, ns: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), url, ns],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the worker for {src} did not start")

    def time(self, case: str, n: int) -> tuple[float, float]:
        """Nanoseconds per call of ``case`` over ``n`` calls: wall time, the worker's CPU time."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"{case} {n}\n")
        self.proc.stdin.flush()
        wall, cpu = self.proc.stdout.readline().split()
        return float(wall), float(cpu)

    def close(self) -> None:
        """Stop the worker."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def compare(baseline: Path, rounds: int) -> str:
    """The Markdown table of both trees' hot-path costs."""
    from freshlink.testing.server import RedisServer

    server = RedisServer()
    server.start()
    before = after = None
    try:
        before = Worker(baseline / "src", server.url, "before")
        after = Worker(HERE.parent / "src", server.url, "after")
        samples: dict[str, dict[str, list[tuple[float, float]]]] = {
            c: {"b": [], "a": []} for c in CALLS
        }
        for case, n in CALLS.items():  # warm-up round, not counted
            before.time(case, max(n // 10, 1))
            after.time(case, max(n // 10, 1))
        for r in range(rounds):
            for case, n in CALLS.items():
                pair = [("b", before), ("a", after)]
                for side, worker in pair if r % 2 == 0 else pair[::-1]:
                    samples[case][side].append(worker.time(case, n))
    finally:
        for w in (before, after):
            if w is not None:
                w.close()
        server.close()
    rows = []
    for case, s in samples.items():
        row = [case]
        for i in (0, 1):  # wall time, then CPU time
            before_ns = [x[i] for x in s["b"]]
            after_ns = [x[i] for x in s["a"]]
            pairs = zip(after_ns, before_ns, strict=True)
            ratio = statistics.median(a / b if b else math.nan for a, b in pairs)
            row += [num(statistics.median(before_ns)), num(statistics.median(after_ns))]
            row.append(f"{ratio:.2f}x")
        rows.append(row)
    return md_table(
        ["case", "wall before", "wall after", "ratio", "CPU before", "CPU after", "ratio"],
        rows,
        title=f"Hot paths, ns per call, {rounds} interleaved rounds (baseline: {baseline}); "
        "ratio: median of the per-round after/before ratios; CPU: the calling process's own",
    )


def main(argv: list[str] | None = None) -> str:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout to compare to")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    text = compare(args.baseline, args.rounds)
    print(text)
    return text


if __name__ == "__main__":
    main()
