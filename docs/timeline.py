"""Draw docs/_static/freshness.png: what each freshness policy does around expiry.

    python docs/timeline.py

The bands come from freshlink.policy.decide itself (sampled over an entry's age), so the
picture cannot drift from the code.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from freshlink.policy import Action, Freshness, decide  # noqa: E402

TTL = 10.0
LOAD_TIME = 0.5
ROWS = [
    ("plain TTL", Freshness(ttl=TTL)),
    ("ahead=0.8", Freshness(ttl=TTL, ahead=0.8)),
    ("XFetch beta=1 (P of refresh)", Freshness(ttl=TTL, beta=1.0)),
    ("stale_while_revalidate=4", Freshness(ttl=TTL, stale_while_revalidate=4)),
    ("stale_if_error=6", Freshness(ttl=TTL, stale_if_error=6)),
]
COLOURS = {
    Action.SERVE: "#4caf50",
    Action.SERVE_AND_REFRESH: "#2196f3",
    Action.SERVE_STALE_AND_REFRESH: "#ff9800",
    Action.LOAD: "#e53935",
}
LABELS = {
    Action.SERVE: "serve",
    Action.SERVE_AND_REFRESH: "serve + refresh in background",
    Action.SERVE_STALE_AND_REFRESH: "serve stale + refresh in background",
    Action.LOAD: "load (caller waits)",
}


def main(out: str = "docs/_static/freshness.png") -> Path:
    fig, ax = plt.subplots(figsize=(9, 3.4), dpi=110)
    step = 0.02
    ages = [i * step for i in range(int(18 / step))]
    rng = random.Random(7)
    for row, (label, policy) in enumerate(ROWS):
        y = len(ROWS) - 1 - row
        for age in ages:
            if policy.beta:
                # XFetch is random: shade by the fraction of 200 draws that refresh.
                draws = [decide(policy, age, TTL, LOAD_TIME, rng.random) for _ in range(200)]
                p = draws.count(Action.SERVE_AND_REFRESH) / len(draws)
                action = Action.LOAD if age >= TTL else Action.SERVE_AND_REFRESH
                colour = COLOURS[action] if age >= TTL else COLOURS[Action.SERVE]
                ax.barh(y, step, left=age, color=colour, height=0.6, linewidth=0)
                if age < TTL and p > 0:
                    ax.barh(y, step, left=age, color=COLOURS[Action.SERVE_AND_REFRESH],
                            alpha=p, height=0.6, linewidth=0)
                continue
            action = decide(policy, age, TTL, LOAD_TIME, rng.random)
            if policy.stale_if_error and action is Action.LOAD and age < TTL + policy.grace:
                ax.barh(y, step, left=age, color=COLOURS[Action.LOAD], height=0.6, linewidth=0,
                        hatch="//", edgecolor="#ff9800")
                continue
            ax.barh(y, step, left=age, color=COLOURS[action], height=0.6, linewidth=0)
    ax.axvline(TTL, color="black", linestyle="--", linewidth=1)
    ax.text(TTL, len(ROWS) - 0.35, " ttl", va="bottom")
    ax.set_yticks(range(len(ROWS)), [label for label, _ in reversed(ROWS)])
    ax.set_xlabel("age of the entry (s); invalidated entries are never served, whatever the band")
    ax.set_xlim(0, 18)
    handles = [Patch(color=COLOURS[a], label=LABELS[a]) for a in Action]
    handles.append(Patch(facecolor=COLOURS[Action.LOAD], edgecolor="#ff9800", hatch="//",
                         label="load; on loader error serve stale"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=3,
              fontsize=8, frameon=False)
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
