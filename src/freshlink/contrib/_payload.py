"""The metrics endpoint's body: the Prometheus text exposition of the configured registry."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import MissingDependencyError

__all__ = ["metrics_payload", "require_prometheus"]

_MISSING = "the metrics endpoint needs prometheus_client: pip install 'freshlink[prometheus]'"


def metrics_payload(registry: Any) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``registry`` and its content type."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    except ImportError as exc:
        raise MissingDependencyError(_MISSING) from exc
    return generate_latest(registry), CONTENT_TYPE_LATEST


def require_prometheus() -> None:
    """Raise MissingDependencyError now (at start-up) if prometheus_client is missing."""
    try:
        importlib.import_module("prometheus_client")
    except ImportError as exc:
        raise MissingDependencyError(_MISSING) from exc
