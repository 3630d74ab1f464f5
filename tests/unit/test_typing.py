"""The decorated function's handles type-check like the original (mypy --strict)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent / "typing"


def mypy(path: Path) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--hide-error-context",
            "--no-error-summary",
            "--config-file",
            "/dev/null",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    return out.stdout


def test_correct_use_type_checks() -> None:
    assert mypy(HERE / "handles_ok.py") == ""


def test_wrong_use_is_reported_on_every_marked_line() -> None:
    source = (HERE / "handles_bad.py").read_text().splitlines()
    expected = {
        i + 1: m.group(1)
        for i, line in enumerate(source)
        if (m := re.search(r"# E: ([\w-]+)", line))
    }
    reported: dict[int, set[str]] = {}
    for line in mypy(HERE / "handles_bad.py").splitlines():
        m = re.match(r".*handles_bad\.py:(\d+): error: .*\[([\w-]+)\]$", line)
        if m:
            reported.setdefault(int(m.group(1)), set()).add(m.group(2))
    for lineno, code in expected.items():
        assert code in reported.get(lineno, set()), (lineno, code, reported)
    assert set(reported) == set(expected), reported
