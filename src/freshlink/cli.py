"""The ``freshlink`` command: demo, stats, invalidate, inspect, relay, bench.

Exit codes: 0 success; 1 the thing asked about does not exist (``inspect`` of a missing key);
2 bad input (URL, tag, option); 3 the backend could not be reached. Errors are one line on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from ._failures import (
    EXIT_BACKEND,
    EXIT_MISSING,
    EXIT_USAGE,
    Fail,
    check_reachable,
    check_scheme,
    short,
)
from .errors import BackendError, ConfigurationError, FreshlinkError, MissingDependencyError
from .keyspace import REDIS_SCHEMES

__all__ = ["main"]


def _open(args: argparse.Namespace) -> Any:
    from .cache import Cache

    try:
        return Cache(args.url, namespace=args.namespace, local=None)
    except ConfigurationError as exc:
        raise Fail(EXIT_USAGE, str(exc)) from None
    except MissingDependencyError as exc:
        raise Fail(EXIT_USAGE, str(exc)) from None


@contextlib.contextmanager
def _session(args: argparse.Namespace, failure: str = "cannot reach Redis at {url}") -> Any:
    """A Cache on ``args.url``: a backend failure becomes exit 3, and it is always closed."""
    check_scheme(args.url)
    check_reachable(args.url)
    cache = _open(args)
    try:
        yield cache
    except BackendError as exc:
        raise Fail(EXIT_BACKEND, f"{failure.format(url=args.url)}: {exc}") from None
    finally:
        cache.close()


def _redis(cache: Any) -> Any:
    return getattr(cache.backend, "inner", cache.backend)


def _is_redis_url(url: str) -> bool:
    # The demo's processes share one plain Redis: no cluster, no sentinel.
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme in REDIS_SCHEMES


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the expired-loan-link demo."""
    from .demo import DemoConfig, plot, render_table, run_demo, to_json

    if args.url is not None and not _is_redis_url(args.url):
        raise Fail(EXIT_USAGE, f"--url must be a redis:// URL, got {args.url!r}")
    if args.plot:  # checked before the demo runs, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise Fail(
                EXIT_USAGE,
                "--plot needs matplotlib: pip install 'freshlink[demo]' (or matplotlib)",
            ) from None
    cfg = DemoConfig(duration=args.duration, nodes=args.nodes, url=args.url)
    if args.url:
        check_reachable(args.url)
    show_progress = not args.json and sys.stderr.isatty()
    results = run_demo(cfg, progress=show_progress)
    if args.plot:
        plot(results, args.plot)
    if args.json:
        print(to_json(results, cfg))
    else:
        print(render_table(results, cfg))
        naive, fresh = results
        print()
        print(
            f"naive: {naive.expired_after_ack} of {naive.pages} pages told the borrower the "
            f"link had expired although it had been renewed "
            f"(up to {naive.stale_window_ms:.0f} ms after the renewal was acknowledged)."
        )
        print(f"freshlink: {fresh.expired_after_ack} such pages.")
        if args.plot:
            print(f"timeline written to {args.plot}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Print what the backend holds for a namespace, and the generations of given tags."""
    from .inspection import count_keys
    from .keys import check_tag

    tags = [_tag(t, check_tag) for t in args.tag]
    with _session(args) as cache:
        client = _redis(cache).client
        info = client.info()
        counts, truncated = count_keys(client, args.namespace, args.max_scan)
        hits, misses = info.get("keyspace_hits", 0), info.get("keyspace_misses", 0)
        current = cache.backend.current([cache.keyspace.tag(t) for t in tags]) if tags else ()
        report = {
            "url": args.url,
            "namespace": args.namespace,
            "redis_version": info.get("redis_version"),
            "run_id": info.get("run_id"),
            "used_memory_human": info.get("used_memory_human"),
            **counts,
            "scan_truncated": truncated,
            "redis_keyspace_hit_ratio": None if hits + misses == 0 else hits / (hits + misses),
            "breaker": cache.breaker.state if cache.breaker is not None else None,
            "tags": dict(zip(tags, current, strict=True)),
        }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        width = max(map(len, report))
        for name, value in report.items():
            if name == "tags":
                for tag, gen in value.items():
                    print(f"{'tag ' + tag:{width}}  generation {gen}")
            else:
                print(f"{name:{width}}  {value}")
        print("(hit ratios of the app processes are their metrics: see freshlink.metrics)")
    return 0


def _tag(tag: str, check: Any) -> str:
    try:
        return str(check(tag))
    except FreshlinkError as exc:
        raise Fail(EXIT_USAGE, str(exc)) from None


def cmd_invalidate(args: argparse.Namespace) -> int:
    """Invalidate tags in every process sharing the backend."""
    from .keys import check_tag

    tags = [_tag(t, check_tag) for t in args.tags]
    with _session(args, "invalidation not confirmed") as cache:
        names = [cache.keyspace.tag(t) for t in tags]
        values = cache.backend.invalidate(names)
    if args.json:
        print(json.dumps({"invalidated": dict(zip(tags, values, strict=True))}, indent=2))
        return 0
    for tag, value in zip(tags, values, strict=True):
        print(f"invalidated {tag} (generation now {value})")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Show one entry: value preview, stamped vs current generations, TTL left, validity."""
    from .inspection import NoEntryError, entry_json, entry_lines, inspect_entry

    with _session(args) as cache:
        try:
            report = inspect_entry(cache, args.key)
        except NoEntryError as exc:
            raise Fail(EXIT_MISSING, str(exc)) from None
    if args.json:
        print(json.dumps(entry_json(report, args.width), indent=2))
    else:
        print("\n".join(entry_lines(report, args.width)))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark suite (from a clone of the repository)."""
    import importlib
    import importlib.util
    import os

    # The suite lives in the repository, not in the package: find it from the clone the
    # command runs in (a console script does not put the working directory on sys.path).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if importlib.util.find_spec("benchmarks") is None:
        raise Fail(
            EXIT_USAGE,
            "the benchmark suite lives in the repository's benchmarks/ "
            "folder: run this from a clone",
        )
    try:  # the suite imports what it measures (redis-py, the peers) as it goes
        importlib.import_module("benchmarks.__main__").main(["--quick"] if args.quick else [])
    except ImportError as exc:
        raise Fail(
            EXIT_USAGE,
            f"the benchmark suite needs the test tools ({exc.name or exc}): "
            "pip install -e '.[all]' --group dev (pip >= 25.1)",
        ) from None
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
    """Apply the outbox rows writers left (they died, or the cache was unreachable)."""
    try:
        from sqlalchemy import create_engine

        from .contrib.sqlalchemy import relay_once
    except ImportError as exc:
        raise Fail(
            EXIT_USAGE,
            f"freshlink relay needs SQLAlchemy ({exc.name or exc}): "
            "pip install 'freshlink[sqlalchemy]'",
        ) from None
    from . import Cache
    from .contrib.outbox import check_relay_url

    try:
        check_relay_url(args.url)
    except ConfigurationError as exc:
        raise Fail(EXIT_USAGE, f"freshlink relay --url: {exc}") from None
    metrics = None
    if args.metrics_port is not None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise Fail(
                EXIT_USAGE,
                "--metrics-port needs prometheus-client: pip install 'freshlink[prometheus]'",
            ) from None
        from .contrib.sqlalchemy import RelayMetrics

        registry = CollectorRegistry()
        metrics = RelayMetrics(registry)
        start_http_server(args.metrics_port, registry=registry)
    engine = create_engine(args.db)
    caches: dict[str, Cache] = {}

    def cache_for(namespace: str) -> Cache:
        if namespace not in caches:
            caches[namespace] = Cache(args.url, namespace=namespace, local=None)
        return caches[namespace]

    from sqlalchemy.exc import SQLAlchemyError

    passes = 0
    try:
        while True:
            try:
                done = relay_once(engine, cache_for, grace=args.grace, batch=args.batch)
            except SQLAlchemyError as exc:
                # One line, not SQLAlchemy's traceback: a wrong --db is the usual cause. Once
                # the relay has worked, a database hiccup only skips this pass.
                problem = f"freshlink relay --db {args.db}: {getattr(exc, 'orig', None) or exc}"
                if args.once or not passes:
                    raise Fail(EXIT_BACKEND, problem) from None
                print(f"freshlink: {problem}; retrying", file=sys.stderr, flush=True)
                time.sleep(args.interval)
                continue
            passes += 1
            if metrics is not None:
                metrics.observe(done)
            report = {
                "applied": done.applied,
                "failed": done.failed,
                "pending": done.pending.rows,
                "oldest_pending_s": round(done.pending.oldest_age, 3),
            }
            if args.json:
                print(json.dumps(report), flush=True)
            else:
                age = f"{done.pending.oldest_age:.3f}"  # as manage.py freshlink relay prints it
                print(
                    " ".join(f"{k}={v}" for k, v in {**report, "oldest_pending_s": age}.items()),
                    flush=True,
                )
            if args.once:
                return EXIT_BACKEND if done.failed else 0
            time.sleep(args.interval)
    finally:
        for cache in caches.values():
            cache.close()
        engine.dispose()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``freshlink`` command."""
    from . import __version__

    p = argparse.ArgumentParser(prog="freshlink", description="freshlink: a coherent cache.")
    p.add_argument("--version", action="version", version=f"freshlink {__version__}")
    sub = p.add_subparsers(dest="command")

    d = sub.add_parser("demo", help="the expired-loan-link demo: naive cache vs freshlink")
    d.add_argument(
        "--url", help="run nodes as processes on this Redis (default: threads, embedded backend)"
    )
    d.add_argument("--duration", type=float, default=5.0, help="seconds per setup (default 5)")
    d.add_argument(
        "--nodes", type=_positive_int, default=4, help="app nodes (default 4, at least 2)"
    )
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.add_argument("--plot", metavar="PNG", help="draw the timeline into this file")
    d.set_defaults(func=cmd_demo)

    def backend_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--url", required=True, help="redis://host:port/db")
        sp.add_argument("--namespace", default="freshlink", help="cache namespace")
        sp.add_argument("--json", action="store_true", help="machine-readable output")

    s = sub.add_parser("stats", help="what the backend holds; generations of tags")
    backend_args(s)
    s.add_argument("--tag", action="append", default=[], help="show this tag's generation")
    s.add_argument("--max-scan", type=int, default=1_000_000, help="stop counting keys here")
    s.set_defaults(func=cmd_stats)

    i = sub.add_parser("invalidate", help="invalidate tags everywhere")
    backend_args(i)
    i.add_argument("tags", nargs="+", help="tags such as loan:7")
    i.set_defaults(func=cmd_invalidate)

    n = sub.add_parser("inspect", help="show one entry and whether it is still valid")
    backend_args(n)
    n.add_argument("key", help="the entry key (see a cached function's .key(...))")
    n.add_argument("--width", type=_positive_int, default=200, help="value preview width")
    n.set_defaults(func=cmd_inspect)

    r = sub.add_parser("relay", help="apply the invalidations writers left in the outbox")
    r.add_argument("--db", required=True, help="the database URL (SQLAlchemy)")
    r.add_argument("--url", required=True, help="the Redis URL the app servers' cache uses")
    r.add_argument("--once", action="store_true", help="one pass, then exit")
    r.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    r.add_argument(
        "--grace", type=float, default=5.0, help="leave younger rows to their writers (s)"
    )
    r.add_argument("--batch", type=_positive_int, default=500, help="rows per pass")
    r.add_argument("--json", action="store_true", help="one JSON line per pass")
    r.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics on this port (/metrics)"
    )
    r.set_defaults(func=cmd_relay)

    b = sub.add_parser("bench", help="the benchmark suite (from a clone)")
    b.add_argument("--quick", action="store_true")
    b.set_defaults(func=cmd_bench)
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``freshlink`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `freshlink` alone: what it can do, not a usage error
        parser.print_help()
        return 0
    if getattr(args, "nodes", 2) < 2:
        # One node cannot serve a page another node's write made stale: nothing to show.
        print(
            "freshlink: --nodes must be at least 2 (the demo shows one node serving what "
            "another node's write made stale)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if getattr(args, "duration", 1) <= 0:
        print("freshlink: --duration must be positive", file=sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.func(args)
    except Fail as exc:
        print(f"freshlink: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BackendError as exc:  # one line, never a traceback (see the module docstring)
        print(f"freshlink: the backend failed: {short(exc)}", file=sys.stderr)
        return EXIT_BACKEND
    except BrokenPipeError:  # `freshlink demo --json | head`: the reader left, not an error
        sys.stderr.close()
        return 0
    return code


def run() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())
