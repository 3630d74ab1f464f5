"""``python -m freshlink``: the same as the ``freshlink`` command."""

from __future__ import annotations

from .cli import run

run()
