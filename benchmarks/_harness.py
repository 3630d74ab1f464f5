"""Shared timing harness: interleaved rounds, medians, spreads and per-round ratios."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import timeit
from collections.abc import Callable, Sequence
from importlib import metadata


def per_call_ns(fn: Callable[[], object], number: int) -> float:
    """Nanoseconds per call of ``fn`` over ``number`` calls (loop overhead included)."""
    return timeit.timeit(fn, number=number) / number * 1e9


def interleaved(
    cases: Sequence[tuple[str, Callable[[], object]]], *, rounds: int, number: int
) -> dict[str, list[float]]:
    """Time every case once per round, rounds interleaved so drift hits all cases alike."""
    out: dict[str, list[float]] = {name: [] for name, _ in cases}
    for fn in (f for _, f in cases):  # warm up
        per_call_ns(fn, max(number // 10, 1))
    for _ in range(rounds):
        for name, fn in cases:
            out[name].append(per_call_ns(fn, number))
    return out


def table(samples: dict[str, list[float]], floor: str, *, unit: str = "ns", title: str = "") -> str:
    """A Markdown table: median, spread (min..max) and the median of per-round ratios."""
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines += [f"| case | median {unit} | spread | × {floor} |", "|---|---:|---:|---:|"]
    base = samples[floor]
    for name, xs in samples.items():
        ratios = [x / b for x, b in zip(xs, base, strict=True)]
        lines.append(
            f"| {name} | {_num(statistics.median(xs))} | {_num(min(xs))}..{_num(max(xs))} "
            f"| {statistics.median(ratios):.2f} |"
        )
    return "\n".join(lines)


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def environment() -> str:
    """One line naming the interpreter, machine and library versions."""
    versions = []
    for dist in ("freshlink", "cachetools", "wrapt", "redis", "dogpile.cache", "cashews"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{dist} {metadata.version(dist)}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"Python {sys.version.split()[0]} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load {load:.2f}; " + ", ".join(versions)
    )
