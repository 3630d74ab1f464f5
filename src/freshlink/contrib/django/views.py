"""Opt-in views: Prometheus metrics and "report stale" (enable by including ``urls``)."""

from __future__ import annotations

import json
from typing import Any

from django.http import Http404, HttpResponse, JsonResponse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from .._plugin import Reply, metrics, report_stale
from .conf import get_state

__all__ = ["metrics_view", "report_stale_view"]


def metrics_view(request: Any) -> Any:
    """Serve the registry named by ``FRESHLINK['METRICS']`` (404 when none is configured)."""
    payload = metrics(get_state())
    if payload is None:
        raise Http404("freshlink metrics are not configured (FRESHLINK['METRICS'])")
    body, content_type = payload
    return HttpResponse(body, content_type=content_type)


def _payload(request: Any) -> Any:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    return request.POST


def _respond(reply: Reply) -> Any:
    if reply.body is None:
        response = HttpResponse(status=reply.status)
    else:
        response = JsonResponse(reply.body, status=reply.status)
    for name, value in reply.headers.items():
        response[name] = value
    return response


@require_POST  # type: ignore[untyped-decorator]
def report_stale_view(request: Any) -> Any:
    """Refresh the entry a user says looks stale (rate-limited per client: 429 when over)."""

    def is_safe(target: str) -> bool:
        return bool(
            url_has_allowed_host_and_scheme(
                target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
            )
        )

    client = request.META.get("REMOTE_ADDR") or "unknown"
    reply = report_stale(get_state(), client, _payload(request), is_safe, request)
    return _respond(reply)
