"""docs/tutorial.md, followed step by step in a fresh virtual environment, under ten minutes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def console_commands(text: str) -> list[str]:
    """The commands of every ``console`` block, as printed (without the ``$ `` prompt)."""
    blocks = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tutorial_from_an_empty_virtualenv(tmp_path: Path) -> None:
    started = time.monotonic()
    page = TUTORIAL.read_text()
    app_code, check_code = python_blocks(page)
    commands = console_commands(page)
    assert commands[-1] == "pip install 'freshlink[flask]'"
    # Release day in miniature: freshlink as a wheel on a local index, everything else from
    # PyPI. The page's commands then run exactly as printed, in one shell, from an empty dir.
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(wheels)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    work = tmp_path / "work"
    work.mkdir()
    script = "set -e\n" + "\n".join(commands) + "\n"
    # Only what a new user's shell has: nothing from this test run's own environment.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PIP_FIND_LINKS": str(wheels),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    steps = subprocess.run(
        ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    assert steps.returncode == 0, steps.stdout + steps.stderr
    py = work / ".venv" / "bin" / "python"
    probe = subprocess.run(
        [
            str(py),
            "-c",
            "import freshlink, flask; print(freshlink.__file__, freshlink.__version__)",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    from freshlink import __version__

    where, version = probe.stdout.split()
    assert where.startswith(str(work / ".venv"))  # installed into the venv, not borrowed
    assert version == __version__  # this checkout's wheel
    # Step 2: app.py exactly as on the page. Step 3: check.py exactly as on the page.
    (work / "app.py").write_text(app_code)
    (work / "check.py").write_text(check_code)
    out = subprocess.run(
        [str(py), "check.py"], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 600, "the tutorial took more than ten minutes"
