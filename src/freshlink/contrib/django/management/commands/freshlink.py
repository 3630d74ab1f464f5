"""``manage.py freshlink stats | invalidate TAG... | inspect KEY``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

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

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the chosen subcommand."""
        action = options["action"]
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
