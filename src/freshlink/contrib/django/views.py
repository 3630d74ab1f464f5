"""Opt-in views: Prometheus metrics and "report stale" (enable by including ``urls``)."""

from __future__ import annotations

import json
import math
from typing import Any

from django.http import Http404, HttpResponse, JsonResponse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from .. import metrics_payload
from .conf import get_state, reporters

__all__ = ["metrics_view", "report_stale_view"]


def metrics_view(request: Any) -> Any:
    """Serve the registry named by ``FRESHLINK['METRICS']`` (404 when none is configured)."""
    registry = get_state().settings.metrics
    if registry is None:
        raise Http404("freshlink metrics are not configured (FRESHLINK['METRICS'])")
    body, content_type = metrics_payload(registry)
    return HttpResponse(body, content_type=content_type)


def _payload(request: Any) -> Any:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    return request.POST


@require_POST  # type: ignore[untyped-decorator]
def report_stale_view(request: Any) -> Any:
    """Refresh the entry a user says looks stale (rate-limited per client: 429 when over)."""
    state = get_state()
    wait = state.limiter.take(request.META.get("REMOTE_ADDR") or "unknown")
    if wait > 0:
        response = JsonResponse({"error": "too many stale reports, try again later"}, status=429)
        response["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    data = _payload(request)
    name = data.get("name")
    reporter = reporters().get(name) if isinstance(name, str) else None
    if reporter is None or not isinstance(name, str):
        return JsonResponse({"error": f"no stale reporter named {name!r}"}, status=404)
    reporter(request)
    state.reports.count(name)
    target = data.get("next")
    if isinstance(target, str) and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        response = HttpResponse(status=303)  # see other: the browser GETs the page again
        response["Location"] = target
        return response
    return JsonResponse({"refreshed": name})
