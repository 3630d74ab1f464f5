"""Run inside a clean venv holding an installed freshlink (see .ci/smoke.sh); exits 1 on failure.

Usage: python .ci/smoke.py PATH_TO_THE_VENVS_freshlink_SCRIPT
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path


def main(script: str) -> None:
    import freshlink

    where = Path(freshlink.__file__).resolve()
    assert "site-packages" in where.parts, f"imported from {where}, not the installed package"
    assert (where.parent / "py.typed").is_file(), "py.typed is not installed"

    version = importlib.metadata.version("freshlink")
    assert freshlink.__version__ == version, (freshlink.__version__, version)
    out = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"freshlink {version}", out.stdout

    help_text = subprocess.run(
        [script, "demo", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--url" in help_text, help_text

    cache = freshlink.Cache("memory://", namespace="smoke")
    calls: list[int] = []

    @cache.cached(ttl=60, tags=["loan:{loan_id}"])
    def loan(loan_id: int) -> dict[str, int]:
        calls.append(loan_id)
        return {"id": loan_id, "version": len(calls)}

    assert loan(7) == loan(7) == {"id": 7, "version": 1}
    cache.invalidate("loan:7")
    assert loan(7) == {"id": 7, "version": 2}
    cache.close()

    import redis  # the [redis] extra came with hiredis

    assert importlib.metadata.version("hiredis"), "hiredis missing from freshlink[redis]"
    assert redis.Redis  # imported without error

    plugins = importlib.metadata.entry_points(group="pytest11")
    assert any(ep.value == "freshlink.testing.pytest_plugin" for ep in plugins), list(plugins)
    print(f"smoke: freshlink {version} from {where.parent} OK")


if __name__ == "__main__":
    main(sys.argv[1])
