"""``manage.py freshlink stats | invalidate TAG... | inspect KEY | relay``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from freshlink import Cache
from freshlink.contrib._plugin import HELP, CommandFailed, run_command
from freshlink.contrib.django.conf import get_state


class Command(BaseCommand):  # type: ignore[misc]
    """Inspect and control the freshlink cache configured by ``settings.FRESHLINK``."""

    help = "Inspect and control the freshlink cache: stats | invalidate TAG... | inspect KEY"

    def add_arguments(self, parser: Any) -> None:
        """Subcommands: stats, invalidate TAG..., inspect KEY."""
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("stats", help=HELP["stats"])
        inv = sub.add_parser("invalidate", help=HELP["invalidate"])
        inv.add_argument("tags", nargs="+", metavar="TAG")
        ins = sub.add_parser("inspect", help=HELP["inspect"])
        ins.add_argument("key", metavar="KEY")
        rel = sub.add_parser("relay", help="apply the invalidations writers left in the outbox")
        rel.add_argument("--once", action="store_true", help="one pass, then exit")
        rel.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
        rel.add_argument("--grace", type=float, default=5.0, help="leave younger rows (s)")
        rel.add_argument("--batch", type=int, default=500, help="rows per pass")
        rel.add_argument("--database", default="default", help="the database alias")

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the chosen subcommand."""
        action = options["action"]
        if action == "relay":
            self._relay(options)
            return
        given = {
            "stats": (),
            "invalidate": (options.get("tags"),),
            "inspect": (options.get("key"),),
        }
        try:
            lines = run_command(get_state(), action, *given[action])
        except CommandFailed as exc:
            raise CommandError(str(exc)) from exc
        for line in lines:
            self.stdout.write(line)

    def _relay(self, options: dict[str, Any]) -> None:
        """Apply the outbox rows older than --grace, every --interval (once with --once)."""
        import time

        from freshlink.contrib.django.outbox import relay_once
        from freshlink.contrib.outbox import check_relay_url
        from freshlink.errors import ConfigurationError

        try:
            check_relay_url(get_state().settings.url)
        except ConfigurationError as exc:
            raise CommandError(f"freshlink relay: FRESHLINK['URL']: {exc}") from None
        cache = get_state().cache
        others: dict[str, Cache] = {}

        def cache_for(namespace: str) -> Cache:
            if namespace == cache.namespace:
                return cache
            if namespace not in others:  # rows another app's cache wrote to the same table
                others[namespace] = Cache(get_state().settings.url, namespace=namespace)
            return others[namespace]

        try:
            while True:
                done = relay_once(
                    cache_for,
                    using=options["database"],
                    grace=options["grace"],
                    batch=options["batch"],
                )
                self.stdout.write(
                    f"applied={done.applied} failed={done.failed} "
                    f"pending={done.pending.rows} "
                    f"oldest_pending_s={done.pending.oldest_age:.3f}"
                )
                if options["once"]:
                    if done.failed:
                        raise CommandError("some outbox rows could not be applied")
                    return
                time.sleep(options["interval"])
        finally:
            for other in others.values():
                other.close()
