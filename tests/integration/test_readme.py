"""The README's and the quickstart's shell commands, run exactly as printed in a new virtualenv,
then their Python blocks, as printed, in that virtualenv.

(The tutorial has ``test_tutorial.py``.) One command is left out, with its reason:
``bash .ci/run`` is what runs this test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_HERE = {"bash .ci/run": "it runs this test suite, this test included"}


def shell_commands(text: str) -> list[str]:
    """Commands of the ``console`` blocks: lines with a ``$ `` prompt, or every line if none."""
    commands = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        lines = [line for line in block.splitlines() if line.strip()]
        prompted = [line[2:] for line in lines if line.startswith("$ ")]
        commands += prompted if any(line.startswith("$ ") for line in lines) else lines
    return commands


def test_shell_commands_extractor() -> None:
    text = "```console\n$ pip install x\nout\n```\n```console\nbash .ci/run\n\n```\n"
    assert shell_commands(text) == ["pip install x", "bash .ci/run"]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "page",
    # The README's example starts a throwaway redis-server; the quickstart needs none.
    [pytest.param("README.md", marks=pytest.mark.redis), "docs/quickstart.md"],
)
def test_shell_commands_run_as_printed(page: str, tmp_path: Path) -> None:
    commands = [c for c in shell_commands((ROOT / page).read_text()) if c not in NOT_HERE]
    assert commands, f"{page} has no shell command to run"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # A new user's shell: the virtualenv first on PATH, nothing of this test run's environment.
    env = {
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "VIRTUAL_ENV": str(venv),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }

    def ok(argv: list[str], cwd: Path, what: str) -> None:
        out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"{what} failed:\n{out.stdout[-3000:]}{out.stderr[-3000:]}"

    for command in commands:
        ok(["bash", "-c", command], ROOT, repr(command))
    # The page's Python blocks, in order, as one script run by the virtualenv's Python (from an
    # empty directory: nothing of the clone is importable but what pip installed).
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), flags=re.S)
    work = tmp_path / "work"
    work.mkdir()
    (work / "page.py").write_text("\n".join(blocks))
    ok([str(venv / "bin" / "python"), "page.py"], work, f"{page}'s Python blocks")
