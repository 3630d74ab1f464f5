"""How the ``freshlink`` command fails: exit codes, and URL checks that answer in a second.

Before ``stats``, ``invalidate`` or ``inspect`` open a cache, the URL's scheme is checked and
the server, each sentinel or each cluster node is asked one command with 1-second timeouts and
no retries, so an unreachable, wrong-kind or malformed backend is one line and an exit code.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigurationError
from .keyspace import (
    CLUSTER_SCHEMES,
    MEMORY_SCHEMES,
    REDIS_SCHEMES,
    SENTINEL_SCHEMES,
    schemes_phrase,
)

EXIT_MISSING = 1
EXIT_USAGE = 2
EXIT_BACKEND = 3


#: Every scheme the command accepts: a memory:// cache cannot be reached from outside.
_REDIS_SCHEMES = REDIS_SCHEMES + CLUSTER_SCHEMES + SENTINEL_SCHEMES


class Fail(Exception):
    """A one-line error for the command, and its exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_scheme(url: str) -> None:
    """A Redis URL of a scheme the backends know, checked before anything is imported."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _REDIS_SCHEMES:
        memory = url.partition(":")[0] in MEMORY_SCHEMES
        why = " (a memory:// cache lives inside one process)" if memory else ""
        raise Fail(
            EXIT_USAGE, f"--url must be a {schemes_phrase(memory=False)} URL, got {url!r}{why}"
        )
    if scheme == "unix" and not rest.split("?")[0]:  # redis-py has no default socket path
        raise Fail(EXIT_USAGE, f"bad URL {url!r}: give the socket's path, unix:///path/redis.sock")


def _probe_options() -> dict[str, Any]:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # redis-py's default retries back off for seconds: a probe answers in about one.
    return {"socket_connect_timeout": 1, "socket_timeout": 1, "retry": Retry(NoBackoff(), 0)}


def short(exc: BaseException) -> str:
    """One short line: redis-py puts whole connection-pool reprs in some messages."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = text.split(" : <", 1)[0]
    return text if len(text) <= 200 else text[:199] + "…"


def _probe(host: str, port: int, ssl: bool, *command: str) -> Any:
    """One command on a fresh connection with 1 s timeouts (no retries)."""
    import redis

    client = redis.Redis(host=host, port=port, ssl=ssl, **_probe_options())
    try:
        return client.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        client.close()


def _first_answer(url: str, addresses: list[tuple[str, int]], kind: str, *command: str) -> Any:
    """The reply of the first of ``addresses`` that answers ``command`` (one line on failure).

    An error reply means the address is not a ``kind`` at all: the URL is wrong (exit 2).
    """
    import redis

    ssl = url.startswith("rediss")
    problems = []
    for host, port in addresses:
        try:
            return _probe(host, port, ssl, *command)
        except redis.ResponseError as exc:
            raise Fail(
                EXIT_USAGE, f"{host}:{port} is not a {kind} ({short(exc)}): check the URL"
            ) from None
        except redis.RedisError as exc:
            problems.append(f"{host}:{port}: {short(exc)}")
    raise Fail(EXIT_BACKEND, f"cannot reach any {kind}: " + "; ".join(problems))


def _check_sentinels(url: str) -> None:
    from .backends.urls import parse_sentinel_url

    try:
        parsed = parse_sentinel_url(url)
    except ConfigurationError as exc:
        raise Fail(EXIT_USAGE, str(exc)) from None
    service = parsed["service"]
    found = _first_answer(
        url, parsed["sentinels"], "Sentinel", "SENTINEL", "GET-MASTER-ADDR-BY-NAME", service
    )
    if found is None:
        raise Fail(EXIT_BACKEND, f"the sentinels know no master named {service!r}")


def _check_cluster(url: str) -> None:
    from .backends.urls import parse_cluster_url

    try:
        parsed = parse_cluster_url(url)
    except ConfigurationError as exc:
        raise Fail(EXIT_USAGE, str(exc)) from None
    _first_answer(url, parsed["nodes"], "cluster node", "CLUSTER", "INFO")


def check_reachable(url: str) -> None:
    """Fail fast (about a second per address) with one line if the backend cannot serve."""
    try:
        import redis
    except ImportError:
        raise Fail(EXIT_USAGE, "this needs redis-py: pip install 'freshlink[redis]'") from None
    scheme = url.partition("://")[0]
    if scheme in SENTINEL_SCHEMES:
        _check_sentinels(url)
        return
    if scheme in CLUSTER_SCHEMES:
        _check_cluster(url)
        return
    try:
        client = redis.Redis.from_url(url, **_probe_options())
        client.ping()
        client.close()
    except ValueError as exc:
        raise Fail(EXIT_USAGE, f"bad URL {url!r}: {exc}") from None
    except redis.RedisError as exc:
        raise Fail(EXIT_BACKEND, f"cannot reach Redis at {url}: {exc}") from None
