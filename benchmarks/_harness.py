"""Shared timing harness: interleaved rounds, medians, spreads and per-round ratios.

Every timed table in the suite follows the same method:

* each case is timed once per *round*, and rounds are interleaved (case A, B, C, A, B, C...),
  so a slow patch of the machine (another process, frequency scaling) hits every case alike;
* a row shows the median over rounds and the spread (min..max);
* a ratio is computed *per round* against the floor measured in that same round, and the row
  shows the median of those per-round ratios.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any


def per_call_ns(fn: Callable[[], object], number: int) -> float:
    """Nanoseconds per call of ``fn`` over ``number`` calls (loop overhead included)."""
    return timeit.timeit(fn, number=number) / number * 1e9


def calibrate(fn: Callable[[], object], target: float) -> int:
    """How many calls of ``fn`` take about ``target`` seconds (at least 1)."""
    n = 1
    while True:
        took = timeit.timeit(fn, number=n)
        if took >= target / 5 or n >= 1 << 24:
            return max(int(n * target / max(took, 1e-9)), 1)
        n *= 4


def interleaved(
    cases: Sequence[tuple[str, Callable[[], object]]],
    *,
    rounds: int,
    number: int | None = None,
    target: float = 0.05,
) -> dict[str, list[float]]:
    """Time every case once per round, rounds interleaved so drift hits all cases alike.

    With ``number`` every sample is that many calls; without it each case is calibrated once
    so that one sample lasts about ``target`` seconds (a 30 ns and a 30 µs case then cost the
    same wall time). Returns nanoseconds per call, one sample per round, per case.
    """
    out: dict[str, list[float]] = {name: [] for name, _ in cases}
    numbers: dict[str, int] = {}
    for name, fn in cases:  # warm up, and calibrate
        numbers[name] = number if number is not None else calibrate(fn, target)
        per_call_ns(fn, max(numbers[name] // 10, 1))
    for _ in range(rounds):
        for name, fn in cases:
            out[name].append(per_call_ns(fn, numbers[name]))
    return out


def ratios(samples: dict[str, list[float]], floor: str) -> dict[str, list[float]]:
    """Per-round ratios of every case against ``floor`` (same round, same index)."""
    base = samples[floor]
    return {
        name: [x / b if b else float("nan") for x, b in zip(xs, base, strict=True)]
        for name, xs in samples.items()
    }


def table(
    samples: dict[str, list[float]],
    floor: str,
    *,
    unit: str = "ns",
    title: str = "",
    notes: dict[str, str] | None = None,
    also: Sequence[str] = (),
) -> str:
    """A Markdown table: median, spread (min..max) and the median of per-round ratios.

    ``also`` adds ratio columns against other cases (a goal's reference, say); ``notes`` adds
    rows that could not be measured (name -> why), shown as n/a.
    """
    lines = []
    if title:
        lines += [f"### {title}", ""]
    floors = [floor, *also]
    lines += [
        f"| case | median {unit} | spread | " + " | ".join(f"× {f}" for f in floors) + " |",
        "|---|---:|---:|" + "---:|" * len(floors),
    ]
    rs = [ratios(samples, f) for f in floors]
    for name, xs in samples.items():
        cols = " | ".join(f"{statistics.median(r[name]):.2f}" for r in rs)
        lines.append(
            f"| {name} | {num(statistics.median(xs))} | {num(min(xs))}..{num(max(xs))} | {cols} |"
        )
    for name, why in (notes or {}).items():
        lines.append(f"| {name} | n/a | {why} |" + " |" * len(floors))
    return "\n".join(lines)


def ratio_of(samples: dict[str, list[float]], case: str, floor: str) -> float:
    """The median per-round ratio of ``case`` against ``floor``."""
    return statistics.median(ratios(samples, floor)[case])


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    """A Markdown table; the first column is left-aligned, the others right-aligned."""
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|---|" + "---:|" * (len(headers) - 1))
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def num(x: float) -> str:
    """A number with about three significant digits, thousands separated."""
    if x != x:  # NaN
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


_num = num  # the name used before; kept for modules written against it


def pct(xs: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank, 0 <= q <= 1) of ``xs``."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def med_spread(xs: Sequence[float], fmt: Callable[[float], str] = num) -> tuple[str, str]:
    """(median, "min..max") of ``xs``, formatted."""
    return fmt(statistics.median(xs)), f"{fmt(min(xs))}..{fmt(max(xs))}"


@dataclass
class Figure:
    """A horizontal bar chart to draw (see :mod:`benchmarks._plots`)."""

    name: str
    title: str
    xlabel: str
    bars: list[tuple[str, float, float, float]]  # (label, median, low, high)
    log: bool = False
    floor: float | None = None  # a vertical reference line (e.g. the raw GET floor)
    notes: list[str] = field(default_factory=list)


@dataclass
class Section:
    """One scenario's output: Markdown for results.md, and figures to plot."""

    markdown: str
    figures: list[Figure] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # headline numbers for the goals table


def bars_from(
    samples: dict[str, list[float]], scale: float = 1.0
) -> list[tuple[str, float, float, float]]:
    """Figure bars (median, min, max) from timing samples, scaled."""
    return [
        (name, statistics.median(xs) * scale, min(xs) * scale, max(xs) * scale)
        for name, xs in samples.items()
    ]


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def redis_server_version() -> str:
    """The version of the ``redis-server`` on PATH, or "not installed"."""
    import shutil
    import subprocess

    exe = shutil.which("redis-server")
    if exe is None:
        return "not installed"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    for part in out.split():
        if part.startswith("v="):
            return part[2:]
    return out.strip()


_DISTS = (
    "freshlink",
    "cachetools",
    "wrapt",
    "redis",
    "hiredis",
    "dogpile.cache",
    "cashews",
    "Flask-Caching",
    "Flask",
    "matplotlib",
)


def environment(*, long: bool = False) -> str:
    """The interpreter, machine, load and library versions (one line, or a few with ``long``)."""
    versions = []
    for dist in _DISTS if long else _DISTS[:6]:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{dist} {metadata.version(dist)}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    head = (
        f"Python {sys.version.split()[0]} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load {load[0]:.2f}"
    )
    if not long:
        return head + "; " + ", ".join(versions)
    return "\n".join(
        [
            f"- machine: {_cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} "
            f"{platform.release()}",
            f"- Python {sys.version.split()[0]} ({platform.python_implementation()}); "
            f"redis-server {redis_server_version()} on loopback",
            f"- load average at start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
            "- " + ", ".join(versions),
            f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        ]
    )
