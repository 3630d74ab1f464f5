"""``python -m examples.fastapi_lending [--port P]``: the app under uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--port", type=int, default=8000)
parser.add_argument("--workers", type=int, default=1)
args = parser.parse_args()
uvicorn.run("examples.fastapi_lending.app:app", port=args.port, workers=args.workers)
