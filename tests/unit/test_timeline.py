"""The freshness timeline picture in the docs is drawn from the policy code and still draws."""

from __future__ import annotations

import runpy
from pathlib import Path


def test_timeline_script_draws_a_png(tmp_path: Path) -> None:
    script = Path(__file__).parents[2] / "docs" / "timeline.py"
    module = runpy.run_path(str(script))
    out = module["main"](str(tmp_path / "t.png"))
    data = Path(out).read_bytes()
    assert data.startswith(b"\x89PNG")
    assert len(data) > 5_000
