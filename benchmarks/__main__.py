"""Run the benchmark suite: ``python -m benchmarks [--quick] [--out DIR]``.

Writes ``results.md`` (all tables, with the environment line) into ``--out`` and prints it.
``--quick`` finishes in about a minute and is what ``.ci/run`` prints; it reports, it never
fails on a timing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks import bench_local, bench_redis


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer rounds (CI)")
    ap.add_argument("--out", default="benchmarks/results", help="folder for results.md")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    local_args = ["--rounds", "5", "--number", "50000"] if args.quick else []
    parts = [
        "# freshlink benchmarks",
        f"Command: `python -m benchmarks{' --quick' if args.quick else ''}`",
        bench_local.main(local_args),
        bench_redis.main(["--quick"] if args.quick else []),
        f"_Total run time: {time.monotonic() - t0:.0f} s._",
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n\n".join(parts) + "\n")
    print(f"\nwrote {out / 'results.md'}")


if __name__ == "__main__":
    main()
