"""Cluster and Sentinel URLs: their node lists, service names and query options.

``redis://`` URLs are read by redis-py itself; the multi-node schemes (see
:mod:`freshlink.keyspace` for the list) are read here, without importing redis-py, so a bad URL
is reported before any connection is tried.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ConfigurationError

__all__ = ["parse_cluster_url", "parse_sentinel_url"]


def parse_cluster_url(url: str, *, db: bool = False) -> dict[str, Any]:
    """Startup nodes and options from ``redis+cluster://[user:pass@]host:port[,host:port]``.

    ``db`` allows a ``db`` query option (Sentinel; a cluster has only database 0).
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise ConfigurationError(f"bad URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not host and not port:
            raise ConfigurationError(f"an empty node address in {url!r} (host:port[,host:port])")
        if not colon:  # "host" alone: the default port
            host, port = port, "6379"
        host = host.removeprefix("[").removesuffix("]")  # [::1]:7000
        try:
            number = int(port)
        except ValueError:
            number = -1
        if not host or not 0 < number < 65536:
            raise ConfigurationError(f"bad node {item!r} in {url!r} (host:port[,host:port])")
        nodes.append((host, number))
    options: dict[str, Any] = {"ssl": scheme.startswith("rediss")}
    if userinfo:
        user, _, password = userinfo.partition(":")
        options["username"] = unquote(user) or None
        options["password"] = unquote(password) or None
    for key, values in parse_qs(parts.query).items():
        if key == "db" and not db:
            raise ConfigurationError(f"a Redis Cluster has only database 0; remove db from {url!r}")
        options[key] = _option(url, key, values[-1])
    return {"nodes": nodes, "options": options}


def parse_sentinel_url(url: str) -> dict[str, Any]:
    """Sentinels, service name, db and options from ``redis+sentinel://h:p[,h:p]/name[/db]``."""
    parsed = parse_cluster_url(url, db=True)
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ConfigurationError(
            f"{url!r} names no Sentinel service: use redis+sentinel://host:port/service_name"
        )
    options = parsed["options"]
    if len(path) > 1:
        try:
            options["db"] = int(path[1])
        except ValueError:
            raise ConfigurationError(f"bad database number {path[1]!r} in {url!r}") from None
    return {"sentinels": parsed["nodes"], "service": unquote(path[0]), "options": options}


def pop_wait_options(options: dict[str, Any], wait_replicas: int | str) -> dict[str, Any]:
    """Take ``?wait_replicas=N|auto`` and ``?wait_timeout=S`` out of a parsed URL's options,
    as backend arguments (the URL's win over ``wait_replicas`` given in code)."""
    taken: dict[str, Any] = {"wait_replicas": options.pop("wait_replicas", wait_replicas)}
    if "wait_timeout" in options:
        taken["wait_timeout"] = options.pop("wait_timeout")
    return taken


class _Replicas(int):
    """``wait_replicas=``: a count or ``auto`` (kept as the string)."""

    def __new__(cls, value: str) -> Any:
        return "auto" if value == "auto" else int(value)


#: Query options a cluster or Sentinel URL may carry, with their types.
_OPTIONS: dict[str, type] = {
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "db": int,
    "wait_replicas": _Replicas,
    "wait_timeout": float,
    "ssl_cert_reqs": str,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
}


def _option(url: str, key: str, value: str) -> Any:
    kind = _OPTIONS.get(key)
    if kind is None:
        raise ConfigurationError(
            f"unknown option {key!r} in {url!r}; known: {', '.join(sorted(_OPTIONS))}"
        )
    try:
        parsed = kind(value)
    except ValueError:
        raise ConfigurationError(
            f"option {key}={value!r} in {url!r} is not "
            + ("an int or 'auto'" if kind is _Replicas else kind.__name__)
        ) from None
    if isinstance(parsed, int | float) and not parsed >= 0:
        raise ConfigurationError(f"option {key}={value!r} in {url!r} must be >= 0")
    return parsed
