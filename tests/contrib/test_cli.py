"""The freshlink command, against a real Redis: every subcommand, good and bad input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from freshlink import Cache
from freshlink.cli import main
from freshlink.testing import RedisServer, free_port


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "freshlink", *args], capture_output=True, text=True, timeout=120
    )


def test_demo_short_run_shows_naive_stale_pages_and_freshlink_none() -> None:
    out = run("demo", "--duration", "1.5", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    naive, fresh = report["setups"]
    assert naive["name"].startswith("naive")
    assert naive["renewals"] >= 10
    assert naive["expired_after_ack"] > 0
    assert fresh["expired_after_ack"] == 0
    assert fresh["pages"] > 1000
    assert fresh["loader_calls"] <= naive["loader_calls"]


@pytest.mark.redis
@pytest.mark.slow
def test_demo_on_redis_with_processes(redis_url: str) -> None:
    out = run("demo", "--url", redis_url, "--duration", "1.5", "--nodes", "3", "--json")
    assert out.returncode == 0, out.stderr
    naive, fresh = json.loads(out.stdout)["setups"]
    assert naive["expired_after_ack"] > 0
    assert fresh["expired_after_ack"] == 0
    assert "Traceback" not in out.stderr


def test_demo_plot(tmp_path: Any) -> None:
    png = tmp_path / "timeline.png"
    assert main(["demo", "--duration", "0.5", "--plot", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.redis
def test_invalidate_stats_inspect(
    redis_url: str, caches: list[Cache], capsys: pytest.CaptureFixture[str]
) -> None:
    cache = Cache(redis_url, namespace="cli")
    caches.append(cache)

    @cache.cached(ttl=60, key="loan:{n}", tags=["loan:{n}"])
    def loan(n: int) -> dict[str, Any]:
        return {"id": n, "link": "https://pay.example/7"}

    loan(7)
    key = loan.key(7)
    assert main(["inspect", "--url", redis_url, "--namespace", "cli", key, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["valid"] is True
    assert "pay.example" in shown["value"]
    assert all(g["ok"] for g in shown["generations"])

    assert main(["invalidate", "--url", redis_url, "--namespace", "cli", "loan:7"]) == 0
    assert "invalidated loan:7" in capsys.readouterr().out
    assert main(["inspect", "--url", redis_url, "--namespace", "cli", key, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["valid"] is False
    assert [g["ok"] for g in shown["generations"]] == [True, False]

    assert (
        main(["stats", "--url", redis_url, "--namespace", "cli", "--tag", "loan:7", "--json"]) == 0
    )
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == 1
    assert stats["generations"] == 2
    assert stats["tags"]["loan:7"] == cache.backend.current([cache.keyspace.tag("loan:7")])[0]


@pytest.mark.redis
def test_inspect_missing_key_exits_1(redis_url: str) -> None:
    out = run("inspect", "--url", redis_url, "nope")
    assert out.returncode == 1
    assert "no entry" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["stats", "--url", "mysql://localhost"], 2, "redis://"),
        (["invalidate", "--url", "redis://127.0.0.1:1/0", "bad tag"], 2, "whitespace"),
        (["demo", "--url", "memory://"], 2, "redis://"),
        (["demo", "--duration", "0"], 2, "positive"),
    ],
)
def test_bad_input_is_one_line_and_a_usage_code(args: list[str], code: int, message: str) -> None:
    out = run(*args)
    assert out.returncode == code
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["stats"], ["invalidate", "loan:7"], ["inspect", "k"]])
def test_redis_down_exits_3_without_traceback(command: list[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    out = run(command[0], "--url", url, *command[1:])
    assert out.returncode == 3
    assert "cannot reach" in out.stderr
    assert "Traceback" not in out.stderr


def test_python_dash_m_and_help() -> None:
    out = run("--help")
    assert out.returncode == 0
    for name in ("demo", "stats", "invalidate", "inspect", "bench"):
        assert name in out.stdout


@pytest.mark.redis
def test_invalidation_reaches_a_running_cache(redis_url: str, caches: list[Cache]) -> None:
    cache = Cache(redis_url, namespace="cli2")
    caches.append(cache)
    calls = []

    @cache.cached(ttl=60, tags=["t"])
    def f() -> int:
        calls.append(1)
        return len(calls)

    f()
    assert run("invalidate", "--url", redis_url, "--namespace", "cli2", "t").returncode == 0
    assert f() == 2


@pytest.mark.redis
def test_server_helper_is_usable_from_cli_tests() -> None:
    with RedisServer() as server:
        assert run("stats", "--url", server.url).returncode == 0


@pytest.mark.redis
def test_invalidate_json(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["invalidate", "--url", redis_url, "--json", "loan:7", "user:42"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["invalidated"]) == {"loan:7", "user:42"}
    assert all(isinstance(v, int) for v in out["invalidated"].values())


def test_version_and_bare_command_help(capsys: pytest.CaptureFixture[str]) -> None:
    from freshlink import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"freshlink {__version__}"
    assert main([]) == 0  # help, not a usage error
    out = capsys.readouterr().out
    for command in ("demo", "stats", "invalidate", "inspect", "bench"):
        assert command in out


@pytest.mark.parametrize(
    "argv",
    [
        ["inspect", "--url", "redis://127.0.0.1:1/0", "k", "--width", "-3"],
        ["inspect", "--url", "redis://127.0.0.1:1/0", "k", "--width", "wide"],
        ["demo", "--nodes", "0"],
    ],
)
def test_bad_numbers_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "at least 1" in err or "whole number" in err


def test_demo_needs_two_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--nodes", "1", "--duration", "0.2"]) == 2
    assert "at least 2" in capsys.readouterr().err


def test_demo_plot_without_matplotlib_fails_before_running(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert main(["demo", "--plot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "freshlink[demo]" in err
    assert err.count("\n") == 1  # one line, no traceback


COMMANDS = [["stats"], ["invalidate", "loan:7"], ["inspect", "some-key"]]


@pytest.fixture(scope="module")
def not_redis() -> Iterator[int]:
    """A port on which a server answers like a web server, not like Redis."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


def _one_line(out: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert len(lines[0]) < 400, lines[0]
    return lines[0]


def _timed(*args: str, prelude: str = "") -> tuple[subprocess.CompletedProcess[str], float]:
    code = (
        f"{prelude}import sys; from freshlink.cli import run; "
        f"sys.argv = ['freshlink', *{list(args)!r}]; run()"
    )
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return out, time.monotonic() - started


@pytest.mark.redis
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("url", "code", "says"),
    [
        # unreachable
        ("redis://127.0.0.1:1/0", 3, "cannot reach Redis"),
        ("rediss://127.0.0.1:1/0", 3, "cannot reach Redis"),
        ("unix:///nonexistent/redis.sock", 3, "cannot reach Redis"),
        ("redis+cluster://127.0.0.1:1", 3, "cannot reach any cluster node"),
        ("redis+sentinel://127.0.0.1:1/mymaster", 3, "cannot reach any Sentinel"),
        ("rediss+cluster://127.0.0.1:1", 3, "cannot reach any cluster node"),
        ("rediss+sentinel://127.0.0.1:1/mymaster", 3, "cannot reach any Sentinel"),
        # a server that does not speak Redis at all (see not_redis)
        ("redis://NOT_REDIS/0", 3, "Protocol error"),
        ("redis+cluster://NOT_REDIS", 3, "Protocol error"),
        ("redis+sentinel://NOT_REDIS/mymaster", 3, "Protocol error"),
        # the wrong kind of server (a plain Redis, see PLAIN)
        ("redis+cluster://PLAIN", 2, "is not a cluster node"),
        ("redis+sentinel://PLAIN/mymaster", 2, "is not a Sentinel"),
        ("memory://", 2, "lives inside one process"),
        # malformed
        ("redis://127.0.0.1:notaport/0", 2, "bad URL"),
        ("rediss://[::1", 2, "bad URL"),
        ("unix://", 2, "socket's path"),
        ("redis+cluster://[::1", 2, "bad URL"),
        ("redis+sentinel://127.0.0.1:26379", 2, "names no Sentinel service"),
        ("bogus", 2, "--url must be a redis://"),
    ],
)
def test_every_subcommand_fails_in_one_documented_line(
    redis_server: RedisServer,
    not_redis: int,
    command: list[str],
    url: str,
    code: int,
    says: str,
) -> None:
    url = url.replace("PLAIN", f"127.0.0.1:{redis_server.port}")
    url = url.replace("NOT_REDIS", f"127.0.0.1:{not_redis}")
    out, took = _timed(*command, "--url", url)
    assert out.returncode == code, out.stderr
    assert says in _one_line(out)
    assert took < 3.0


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("url", "says"),
    [("redis://127.0.0.1:1/0", "needs redis-py"), ("bogus", "--url must be a redis://")],
)
def test_without_redis_py_a_bad_url_is_still_a_bad_url(
    command: list[str], url: str, says: str
) -> None:
    out, _ = _timed(*command, "--url", url, prelude="import sys; sys.modules['redis'] = None; ")
    assert out.returncode == 2
    assert says in _one_line(out)


def test_bench_without_redis_py_says_what_to_install() -> None:
    out, _ = _timed("bench", "--quick", prelude="import sys; sys.modules['redis'] = None; ")
    assert out.returncode == 2
    assert "pip install -e '.[all]' --group dev" in _one_line(out)
