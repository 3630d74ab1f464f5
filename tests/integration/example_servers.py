"""The example apps as real server processes on free loopback ports.

Shared by the end-to-end tests (urllib) and the browser tests (Chromium): the same commands a
user types, one process each, every process on the same Redis and the same SQLite file.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from freshlink.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
#: The borrower's link on "my loan" (the same markup in every example app).
STATE = re.compile(r'data-link-state="(\w+)" data-token="([^"]*)"')

#: How to run each example app's server ("{port}" is filled in per process).
COMMANDS = {
    "flask": ["-m", "flask", "--app", "examples.flask_lending.app", "run", "--port", "{port}"],
    "django": ["-m", "examples.django_lending", "runserver", "--noreload", "127.0.0.1:{port}"],
    "fastapi": ["-m", "uvicorn", "examples.fastapi_lending.app:app", "--port", "{port}"],
}


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the examples' settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FRESHLINK_", "LENDING_", "DJANGO_", "FLASK_"))
    }
    env.update(extra)
    return env


class Server:
    """One example server process on a free loopback port."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, *[a.replace("{port}", str(self.port)) for a in args]],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.base + path, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def manage(env: dict[str, str], *args: str) -> str:
    """Run the Django example's manage.py command; its output (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "examples.django_lending", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@contextlib.contextmanager
def example_servers(
    app: str, redis_url: str, tmp_path: Path, count: int = 2
) -> Iterator[list[Server]]:
    """``count`` ready servers of example ``app`` sharing ``redis_url`` and one SQLite file."""
    env = clean_env(
        FRESHLINK_URL=redis_url,
        LENDING_DATABASE=str(tmp_path / "lending.sqlite3"),
        PYTHONUNBUFFERED="1",
    )
    if app == "django":
        manage(env, "migrate", "--no-input", "-v", "0")
    servers: list[Server] = []
    try:
        # One after the other: the first creates and seeds the database alone.
        for i in range(count):
            servers.append(Server(COMMANDS[app], env, tmp_path / f"{app}{i}.log"))
            servers[-1].wait_ready("/", timeout=60)
        yield servers
    finally:
        for s in servers:
            s.stop()
