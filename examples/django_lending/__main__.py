"""``python -m examples.django_lending``: migrate, then serve on 127.0.0.1:8000.

With arguments it is this project's ``manage.py``: ``python -m examples.django_lending
freshlink stats``, ``... runserver 127.0.0.1:8001``, ``... check``.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    """Run a management command (default: migrate, then runserver)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_lending.settings")
    from django.core.management import execute_from_command_line

    args = sys.argv[1:] if argv is None else argv
    prog = "python -m examples.django_lending"
    if not args:
        # runserver's autoreloader runs this module again in a child (RUN_MAIN=true): the
        # parent has migrated already.
        if os.environ.get("RUN_MAIN") != "true":
            execute_from_command_line([prog, "migrate", "--no-input"])
        args = ["runserver", "127.0.0.1:8000"]
    execute_from_command_line([prog, *args])


if __name__ == "__main__":
    main()
