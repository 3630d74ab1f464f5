"""Run the benchmark suite: ``python -m benchmarks [--quick] [--out DIR] [--only NAMES]``.

Every scenario runs freshlink and the peer libraries that do the same job side by side, in
the same run: L1 hit cost (sync, async), memory per entry, Redis hit cost, Redis commands per
hit and per miss, cross-process invalidation, stampedes, the expiry spike, the channel's
fan-out as the fleet grows (freshlink alone), a mixed 95/5 workload, the cost of metrics, and
the cost of the outbox per write transaction.
Writes ``results.md`` (every table, the environment and a summary against freshlink's goals)
and PNG plots into ``--out`` and prints the tables.

``--quick`` finishes in under two minutes and is what ``.ci/run`` prints: it reports, it never
fails on a timing. A scenario that crashes is reported in results.md, the other scenarios
still run, and the command then exits with status 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._harness import Section, environment

#: Scenario names, in the order they run (``--only`` takes a comma-separated subset).
SCENARIOS = (
    "local",
    "memory",
    "redis",
    "cluster",
    "stampede",
    "spike",
    "fanout",
    "throughput",
    "metrics",
    "outbox",
)


def _mine(quick: bool) -> dict[str, Callable[[], list[Section]]]:
    from benchmarks import (
        bench_fanout,
        bench_local,
        bench_memory,
        bench_redis,
        bench_stampede,
        bench_throughput,
    )

    return {
        "local": lambda: [bench_local.collect(*((5, 0.01) if quick else (15, 0.05)))],
        "memory": lambda: [bench_memory.collect(*((1000, 1) if quick else (5000, 2)))],
        "redis": lambda: bench_redis.collect(quick),
        "stampede": lambda: [bench_stampede.collect(1 if quick else 3)],
        "fanout": lambda: [bench_fanout.collect(quick)],
        "throughput": lambda: [
            bench_throughput.collect(*((1, 1.0, 0.3) if quick else (3, 2.0, 0.5)))
        ],
    }


def _other(module: str, quick: bool) -> Callable[[], list[Section]] | None:
    """A scenario module written separately (run through its ``main``), if it exists."""
    try:
        mod = importlib.import_module(f"benchmarks.{module}")
    except ImportError as exc:
        if getattr(exc, "name", None) == f"benchmarks.{module}":
            return None  # not written (yet) in this checkout
        error = exc  # the module exists but cannot import: report it as that scenario's crash

        def broken() -> list[Section]:
            raise error

        return broken

    def run() -> list[Section]:
        try:
            text = mod.main(["--quick"] if quick else [])
        except SystemExit as exc:
            if not quick or exc.code != 2:
                raise RuntimeError(f"benchmarks.{module}.main exited ({exc.code})") from exc
            # argparse refused --quick: this module has no quick mode yet. Its full run would
            # break the two-minute budget, so the quick report says so instead of running it.
            return [Section(f"_`benchmarks.{module}` has no `--quick` mode yet: not run here._")]
        return [Section(_strip_env(str(text or "")))]

    return run


def _strip_env(text: str) -> str:
    # Each module's own one-line environment repeats the suite's header: drop it.
    lines = text.strip().splitlines()
    if lines and lines[0].startswith("Python "):
        lines = lines[1:]
    return "\n".join(lines).strip()


def goals(sections: dict[str, list[Section]]) -> str:
    """freshlink against its goals, from the numbers measured in this run."""
    data: dict[str, Any] = {}
    for secs in sections.values():
        for s in secs:
            data.update(s.data)
    rows = []

    def add(goal: str, measured: str, ok: bool | None) -> None:
        verdict = "n/a" if ok is None else "met" if ok else "**missed**"
        rows.append(f"| {goal} | {measured} | {verdict} |")

    if "l1_vs_goal" in data:
        r = data["l1_vs_goal"]
        add(
            "L1 hit ≤ cachetools.cached(TTLCache, lock=Lock())",
            f"{r:.2f}× ({data['l1_ns']:.0f} ns vs {data['l1_goal_ns']:.0f} ns)",
            r <= 1.0,
        )
    if "l1_redis_vs_goal" in data:
        r = data["l1_redis_vs_goal"]
        add(
            "bounded L1 hit with Redis ≤ 0.8× cachetools.cached(TTLCache, lock=Lock())",
            f"{r:.2f}× ({data['l1_redis_ns']:.0f} ns vs {data['l1_goal_ns']:.0f} ns)",
            r <= 0.8,
        )
    if "l2_vs_floor" in data:
        r = data["l2_vs_floor"]
        cmds = data.get("commands", {}).get("fl-strict")
        per_hit = f", {cmds[0]:g} command per hit" if cmds else ""
        add(
            "strict L2 hit ≤ 1.10× raw GET + json.loads, 1 command per hit",
            f"{r:.2f}× ({data['l2_us']:.0f} µs vs {data['floor_us']:.0f} µs){per_hit}",
            r <= 1.10 and (cmds is None or cmds[0] == 1),
        )
    miss = data.get("commands", {}).get("fl-strict")
    if miss is not None and len(miss) == 4:
        _, sent, _, inside = miss
        # The client waits for each command it sends before the next (no pipelining on a
        # miss): one round trip each.
        add(
            "miss: ≤ 2 round trips, ≤ 8 commands on the server (scripts included)",
            f"{sent:g} round trips, {sent + inside:g} commands on the server "
            f"({sent:g} sent, {inside:g} inside scripts)",
            sent <= 2 and sent + inside <= 8,
        )
    st = data.get("stampede", {})
    for shape, v in st.items():
        if shape == "4x25":
            server = v.get("server_commands")
            on_server = "" if server is None else f", {server:g} commands on the server"
            add(
                "stampede, 4 processes × 25 threads: 1 loader run, p99 ≤ 1.15× loader, "
                "≤ 100 commands on the server",
                f"{v['loads']:g} loader run(s), p99 {v['p99']:.1f} ms = "
                f"{v['p99_ratio']:.2f}×{on_server}",
                v["loads"] == 1 and v["p99_ratio"] <= 1.15 and (server is None or server <= 100),
            )
    spike = data.get("spike_slow")
    if spike is not None:
        add(
            "expiry spike: 0 slow calls (> 10 ms)",
            "; ".join(f"{n}: {c}" for n, c in spike),
            all(c == 0 for n, c in spike if "plain TTL" not in n),
        )
    if "inv_busy_p99_ms" in data:
        # Judged on the busy reader: an idle one's listener thread gets the GIL at once.
        p99 = data["inv_busy_p99_ms"]
        idle = f"; idle reader p99 {data['inv_p99_ms']:.3f} ms" if "inv_p99_ms" in data else ""
        reload = data.get("inv_busy_reload_p99_ms")
        reload_s = "" if reload is None else f"; with the reload p99 {reload:.3f} ms"
        add(
            "cross-process invalidation p99 ≤ 1 ms (busy reader)",
            f"busy reader p99 {p99:.3f} ms (p50 {data['inv_busy_p50_ms']:.3f} ms){reload_s}{idle}",
            p99 <= 1.0,
        )
    elif "inv_p99_ms" in data:
        p99 = data["inv_p99_ms"]
        add(
            "cross-process invalidation p99 ≤ 1 ms (idle reader only)",
            f"p99 {p99:.3f} ms (p50 {data['inv_p50_ms']:.3f} ms)",
            p99 <= 1.0,
        )
    if not rows:
        return ""
    return "\n".join(
        [
            "## freshlink against its goals (this run)",
            "",
            "| goal | measured | verdict |",
            "|---|---|---|",
            *rows,
        ]
    )


def _spike_slow(text: str) -> list[tuple[str, int]]:
    """freshlink rows of the spike table: (case, calls > 10 ms)."""
    out = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if (
            len(cells) >= 4
            and cells[0].startswith("freshlink")
            and re.fullmatch(r"[\d,]+", cells[3])
        ):
            out.append((cells[0], int(cells[3].replace(",", ""))))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer, shorter rounds (CI)")
    ap.add_argument("--out", default="benchmarks/results", help="folder for results.md and PNGs")
    ap.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = ap.parse_args(argv)
    only = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    if args.only:
        command += f" --only {args.only}"
    header = "\n\n".join(
        ["# freshlink benchmarks", f"Command: `{command}`", environment(long=True)]
    )
    print(header, flush=True)
    runners: dict[str, Callable[[], list[Section]] | None] = {
        **_mine(args.quick),
        "spike": _other("bench_spike", args.quick),
        "metrics": _other("bench_metrics", args.quick),
        "outbox": _other("bench_outbox", args.quick),
        "cluster": _other("bench_cluster", args.quick),
    }
    done: dict[str, list[Section]] = {}
    timings: list[str] = []
    failed: list[str] = []
    for name in only:
        run = runners.get(name)
        if run is None:
            done[name] = [Section(f"_Scenario `{name}`: its module is not in this checkout._")]
            continue
        started = time.monotonic()
        print(f"\n==> {name}", flush=True)
        try:
            secs = run()
        except Exception:
            failed.append(name)
            secs = [Section(f"**Scenario `{name}` crashed:**\n\n```\n{traceback.format_exc()}```")]
        if name == "spike" and secs:
            secs[0].data["spike_slow"] = _spike_slow(secs[0].markdown)
        done[name] = secs
        if name not in ("spike", "metrics", "cluster", "outbox"):  # those print their own
            print("\n\n".join(s.markdown for s in secs), flush=True)
        timings.append(f"{name} {time.monotonic() - started:.0f} s")
    figures = []
    if not args.no_plots:
        from benchmarks._plots import draw

        for secs in done.values():
            for s in secs:
                for fig in s.figures:
                    try:
                        figures.append(draw(fig, out))
                    except Exception:
                        failed.append(f"plot {fig.name}")
                        traceback.print_exc()
    summary = goals(done)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    footer = (
        f"_Total run time: {time.monotonic() - t0:.0f} s ({', '.join(timings)}); "
        f"load average at the end: {load:.2f}._"
    )
    body = [header]
    if summary:
        body.append(summary)
    for name in only:
        body += [s.markdown for s in done.get(name, [])]
    if figures:
        body.append("Plots: " + ", ".join(f"[{p.name}]({p.name})" for p in figures))
    body.append(footer)
    (out / "results.md").write_text("\n\n".join(body) + "\n")
    if summary:
        print("\n" + summary)
    print("\n" + footer)
    print(f"wrote {out / 'results.md'} and {len(figures)} plot(s)")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
