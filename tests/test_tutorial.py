"""docs/tutorial.md, followed step by step in a fresh virtual environment, under ten minutes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tutorial_from_an_empty_virtualenv(tmp_path: Path) -> None:
    started = time.monotonic()
    app_code, check_code = python_blocks(TUTORIAL.read_text())
    venv = tmp_path / ".venv"
    # Step 1, as written: a new virtual environment (no system packages) and the extra.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", f"{ROOT}[flask]"],
        check=True,
        timeout=600,
        capture_output=True,
    )
    probe = subprocess.run(
        [str(py), "-c", "import freshlink, flask; print(freshlink.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert str(venv) in probe.stdout  # installed into the venv, not borrowed from outside
    # Step 2: app.py exactly as on the page. Step 3: the page's check, run against it.
    (tmp_path / "app.py").write_text(app_code)
    (tmp_path / "check.py").write_text("from app import *\n" + check_code + "\nprint('ok')\n")
    out = subprocess.run(
        [str(py), "check.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
    assert time.monotonic() - started < 600, "the tutorial took more than ten minutes"
