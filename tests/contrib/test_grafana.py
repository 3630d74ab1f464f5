"""The Grafana dashboard (docs/grafana/freshlink.json) against docs/metrics.md and the metrics.

Every PromQL expression the metrics page documents (the suggested alerts' ``expr`` and the
inline "useful panels" queries) must be a panel, and every metric a panel reads must be one
freshlink exports, so neither the page nor the dashboard can drift from the code.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from freshlink.metrics._families import MetricSet

DOCS = Path(__file__).resolve().parents[2] / "docs"
DASHBOARD = DOCS / "grafana" / "freshlink.json"
METRIC_NAME = re.compile(r"\bfreshlink_[a-z0-9_]+")
# Sample names a family of each type yields (prometheus_client's exposition).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}


def _normal(expr: str) -> str:
    return " ".join(expr.split())


def yaml_exprs(block: str) -> list[str]:
    """The ``expr:`` values of a Prometheus rules file, inline or as ``|`` blocks."""
    found: list[str] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*(?:-\s+)?)expr:\s*(.*)$", lines[i])
        i += 1
        if not m:
            continue
        indent, rest = len(m.group(1)), m.group(2).strip()
        if rest != "|":
            found.append(rest)
            continue
        body = []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            body.append(lines[i])
            i += 1
        found.append(textwrap.dedent("\n".join(body)).strip())
    return found


def documented_queries(text: str) -> list[str]:
    """Every PromQL expression of a page: rules' ``expr`` and inline code that calls a function."""
    queries = [
        e for block in re.findall(r"```yaml\n(.*?)```", text, re.S) for e in yaml_exprs(block)
    ]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    queries += [s for s in re.findall(r"`([^`\n]+)`", prose) if METRIC_NAME.search(s) and "(" in s]
    return queries


def exported_samples() -> set[str]:
    """Every sample name freshlink's metric families expose (namespace ``freshlink``)."""
    names: set[str] = set()
    for metric in MetricSet("freshlink").all:
        for family in metric.describe():
            names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in dashboard["panels"] for t in p.get("targets", ())]


def test_the_extractor_finds_rules_and_inline_queries() -> None:
    page = (
        "Use `sum(rate(freshlink_loads_total[5m]))`, not `freshlink_loads_total` alone.\n"
        "```yaml\nrules:\n  - expr: up == 0\n  - expr: |\n      sum(\n        x)\n"
        "    for: 1m\n```\n"
    )
    assert documented_queries(page) == [
        "up == 0",
        "sum(\n  x)",
        "sum(rate(freshlink_loads_total[5m]))",
    ]


def test_the_dashboard_is_a_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] == "freshlink"
    assert dashboard["uid"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"type", "title", "gridPos"} <= panel.keys()
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert [t["refId"] for t in panel["targets"]] == ["A"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"


def test_every_documented_query_is_a_panel(dashboard: dict[str, Any]) -> None:
    documented = documented_queries((DOCS / "metrics.md").read_text(encoding="utf-8"))
    assert len(documented) >= 8  # the five alerts and the three suggested panels
    in_dashboard = {_normal(t["expr"]) for t in _targets(dashboard)}
    missing = [q for q in documented if _normal(q) not in in_dashboard]
    assert missing == []


def test_every_metric_the_dashboard_reads_is_exported(dashboard: dict[str, Any]) -> None:
    exported = exported_samples()
    assert "freshlink_requests_total" in exported
    assert "freshlink_load_duration_seconds_bucket" in exported
    used = {name for t in _targets(dashboard) for name in METRIC_NAME.findall(t["expr"])}
    assert used
    assert used - exported == set()


def test_an_unknown_metric_would_be_caught() -> None:
    assert "freshlink_request_total" not in exported_samples()  # a typo of requests_total
