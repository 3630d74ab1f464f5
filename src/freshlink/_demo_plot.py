"""The ``freshlink demo --plot`` timeline, drawn with matplotlib (imported only to draw)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

#: One page served: (node, time, link version shown, "link expired" after an acknowledged renewal).
Page = tuple[int, float, int, bool]
#: One renewal acknowledged: (link version, time).
Ack = tuple[int, float]


class Timeline(Protocol):
    """What the plot reads of one setup's result (a :class:`freshlink.demo.SetupResult`)."""

    name: str
    expired_after_ack: int
    timeline: list[Page]
    acks: list[Ack]


def plot(results: Sequence[Timeline], path: str) -> None:
    """Draw the timeline of pages (red: 'link expired' after an acknowledged renewal).

    One panel per setup, then a zoom on one renewal of the first setup with stale pages: the
    race that the full timeline shows as smudges. The legend sits outside the panels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    zoomed = next((r for r in results if r.expired_after_ack), None)
    rows = len(results) + (zoomed is not None)
    fig, axes = plt.subplots(rows, 1, figsize=(11, 2.3 * rows))
    for ax, r in zip(axes, results, strict=False):
        start = min((t for _n, t, _v, _b in r.timeline), default=0.0)
        _draw(ax, r.timeline, r.acks, start, scale=1.0, size=(2, 10))
        ax.set_title(f"{r.name}: {r.expired_after_ack} expired pages", fontsize=9)
        ax.set_xlabel("seconds (grey lines: renewals acknowledged)", fontsize=8)
    if zoomed is not None:
        # The first acknowledged renewal followed by a stale page: 20 ms before to 120 ms after.
        first_bad = min(t for _n, t, _v, bad in zoomed.timeline if bad)
        ack = max(t for _v, t in zoomed.acks if t <= first_bad)
        ax = axes[-1]
        window = [e for e in zoomed.timeline if ack - 0.02 <= e[1] <= ack + 0.12]
        _draw(ax, window, zoomed.acks, ack, 1000.0, (8, 30))
        ax.set_xlim(-20, 120)
        ax.set_title(
            f"zoom on one renewal, {zoomed.name}: pages served after it was acknowledged (0 ms)",
            fontsize=9,
        )
        ax.set_xlabel("milliseconds after the renewal was acknowledged", fontsize=8)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    fig.text(
        0.01,
        0.005,
        "Node 0 is where the back office writes: it drops its own copy (naive) or reads its own "
        "write (freshlink), so it never shows the old link; the other nodes are the borrowers'.",
        fontsize=7,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw(
    ax: Any,
    pages: list[Page],
    acks: list[Ack],
    origin: float,
    scale: float,
    size: tuple[int, int],
) -> None:
    ok = [((t - origin) * scale, n) for n, t, _v, bad in pages if not bad]
    bad = [((t - origin) * scale, n) for n, t, _v, b in pages if b]
    if ok:
        ax.scatter(*zip(*ok, strict=True), s=size[0], color="#4caf50", label="current link")
    if bad:
        ax.scatter(
            *zip(*bad, strict=True),
            s=size[1],
            color="#e53935",
            marker="x",
            label="'link expired' (after renewal acked)",
        )
    for _v, t in acks:
        ax.axvline((t - origin) * scale, color="#9e9e9e", linewidth=0.4)
    ax.set_ylabel("node")
