"""The Redis backend behind Sentinel: the master is found through the sentinels.

Everything else is the single-server backend. What makes it safe across a failover:

* every connection learns the server's identity (run id and replication id), and entries carry
  the identity they were written under, so nothing written before a promotion is valid after
  it; a read that spans a reconnect is repeated with the new identity;
* Sentinel closes the clients of the demoted master (normal and pub/sub), and redis-py's
  Sentinel pool asks the sentinels for the new master on every new connection, so the channel
  resubscribes on the new master and L1 is flushed in between.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ConfigurationError
from .cluster import parse_cluster_url
from .redis import RedisBackend, _redis, _retry

__all__ = ["SentinelBackend", "parse_sentinel_url"]


def parse_sentinel_url(url: str) -> dict[str, Any]:
    """Sentinels, service name, db and options from ``redis+sentinel://h:p[,h:p]/name[/db]``."""
    parsed = parse_cluster_url(url)
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


class SentinelBackend(RedisBackend):
    """The Redis backend on the master a set of Sentinels points to."""

    def __init__(self, *, url: str, **kw: Any) -> None:
        super().__init__(url=url, **kw)
        self._sentinel_url = parse_sentinel_url(url)
        self._sentinel: Any = None

    def _sentinels(self) -> Any:
        """One sync ``Sentinel`` manager, shared by the client and the channel."""
        if self._sentinel is None:
            self._sentinel = _redis("redis.sentinel").Sentinel(
                self._sentinel_url["sentinels"], sentinel_kwargs=self._sentinel_kwargs()
            )
        return self._sentinel

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SentinelBackend:
        """A backend for ``redis+sentinel://`` (or ``rediss+sentinel://``) URLs."""
        _redis()
        return cls(url=url, **options)

    def _kwargs(self) -> dict[str, Any]:
        return {**self._options, **self._sentinel_url["options"]}

    def _sentinel_kwargs(self) -> dict[str, Any]:
        # The sentinels themselves: short timeouts too; they usually need no password.
        return {
            k: v
            for k, v in self._kwargs().items()
            if k in ("socket_timeout", "socket_connect_timeout", "ssl")
        }

    @property
    def client(self) -> Any:
        """The sync client on the current master (created on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._sentinels().master_for(
                        self._sentinel_url["service"],
                        redis_connect_func=self._on_connect,
                        retry=_retry(),
                        **self._kwargs(),
                    )
        return self._client

    @property
    def aclient(self) -> Any:
        """The asyncio client on the current master (created on first use)."""
        if self._aclient is None:
            from redis.asyncio.retry import Retry as AsyncRetry
            from redis.backoff import ExponentialBackoff

            sentinel = _redis("redis.asyncio.sentinel").Sentinel(
                self._sentinel_url["sentinels"], sentinel_kwargs=self._sentinel_kwargs()
            )
            self._aclient = sentinel.master_for(
                self._sentinel_url["service"],
                redis_connect_func=self._aon_connect,
                retry=AsyncRetry(ExponentialBackoff(cap=0.02, base=0.002), retries=1),
                **self._kwargs(),
            )
        return self._aclient

    def _make_pubsub(self) -> Any:
        # A client of its own, found through the sentinels on every (re)connect, with no
        # socket timeout (reads are bounded by get_message's timeout).
        kwargs = {**self._kwargs(), "socket_timeout": None}
        with self._lock:
            client = self._sentinels().master_for(self._sentinel_url["service"], **kwargs)
        return client.pubsub(ignore_subscribe_messages=False)

    def close(self) -> None:
        """Stop the channel, disconnect the client and the connections to the sentinels."""
        super().close()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                sentinel.close()
            self._sentinel = None
