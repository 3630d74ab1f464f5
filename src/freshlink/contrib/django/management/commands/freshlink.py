"""``manage.py freshlink stats | invalidate TAG... | inspect KEY``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from freshlink.contrib import describe_cache, describe_entry
from freshlink.contrib.django.conf import get_state
from freshlink.errors import FreshlinkError


class Command(BaseCommand):  # type: ignore[misc]
    """Inspect and control the freshlink cache configured by ``settings.FRESHLINK``."""

    help = "Inspect and control the freshlink cache: stats | invalidate TAG... | inspect KEY"

    def add_arguments(self, parser: Any) -> None:
        """Subcommands: stats, invalidate TAG..., inspect KEY."""
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("stats", help="URL, namespace, read mode, L1 size, breaker state")
        inv = sub.add_parser("invalidate", help="invalidate tags in every process")
        inv.add_argument("tags", nargs="+", metavar="TAG")
        ins = sub.add_parser("inspect", help="show an entry's stamped vs current generations")
        ins.add_argument("key", metavar="KEY")

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the chosen subcommand."""
        state = get_state()
        action = options["action"]
        if action == "stats":
            rows = describe_cache(state.cache)
            rows.append(("stale reports", str(state.reports.total())))
            width = max(len(k) for k, _ in rows)
            for key, value in rows:
                self.stdout.write(f"{key:<{width}}  {value}")
        elif action == "invalidate":
            tags = options["tags"]
            try:
                state.cache.invalidate(*tags)
            except FreshlinkError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"invalidated {len(tags)} tag(s): {' '.join(tags)}")
        else:
            lines = describe_entry(state.cache, options["key"])
            if lines is None:
                raise CommandError(f"no entry stored under {options['key']!r}")
            for line in lines:
                self.stdout.write(line)
