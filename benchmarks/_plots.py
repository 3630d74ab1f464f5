"""Draw the suite's figures as small PNGs with matplotlib (Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path

from benchmarks._harness import Figure

FRESHLINK = "#1f6f4a"
PEER = "#9aa5b1"


def draw(fig: Figure, out: Path) -> Path:
    """Write ``fig`` as ``out/<name>.png``: horizontal bars, whiskers from min to max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = fig.bars[::-1]  # first row at the top
    labels = [_short(b[0]) for b in bars]
    med = [b[1] for b in bars]
    lo = [max(b[1] - b[2], 0) for b in bars]
    hi = [max(b[3] - b[1], 0) for b in bars]
    colors = [FRESHLINK if "freshlink" in b[0] else PEER for b in bars]
    height = 0.9 + 0.28 * len(bars) + 0.2 * len(fig.notes)
    f, ax = plt.subplots(figsize=(7.5, height), dpi=80)
    ax.barh(labels, med, color=colors, xerr=[lo, hi], error_kw={"elinewidth": 0.8, "capsize": 2})
    if fig.log:
        ax.set_xscale("log")
    if fig.floor is not None:
        ax.axvline(fig.floor, color="#b03a2e", linewidth=1, linestyle="--")
    for y, v in enumerate(med):
        ax.text(v, y, " " + _fmt(v), va="center", fontsize=7)
    ax.set_title(fig.title, fontsize=9)
    ax.set_xlabel(fig.xlabel, fontsize=8)
    ax.tick_params(axis="both", labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    if fig.notes:
        f.text(0.01, 0.01, "; ".join(fig.notes), fontsize=7, color="#555555")
    f.tight_layout()
    path = out / f"{fig.name}.png"
    f.savefig(path)
    plt.close(f)
    _shrink(path)
    return path


def _shrink(path: Path) -> None:
    """A 32-colour palette PNG: a quarter of the size, the same picture for a bar chart."""
    try:
        from PIL import Image  # matplotlib depends on Pillow
    except ImportError:  # pragma: no cover
        return
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=32, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def _short(label: str) -> str:
    return label if len(label) <= 48 else label[:46] + "…"


def _fmt(v: float) -> str:
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.0f}"
    return f"{v:.2g}"
