"""``python -m examples.flask_lending [--host H] [--port P]``: run the example's dev server."""

from __future__ import annotations

import argparse

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    """Parse the options and serve the app."""
    parser = argparse.ArgumentParser(prog="python -m examples.flask_lending")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    create_app().run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
