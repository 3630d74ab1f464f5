"""Flask integration: ``Freshlink(app=None, **options)`` + ``init_app(app)`` (extra ``[flask]``).

Each app gets its own :class:`~freshlink.Cache`, built from the app's ``FRESHLINK_*`` config
keys (over the options given to the constructor) and kept in ``app.extensions["freshlink"]``.
The extension object never stores an app: its decorators are applied at import time and, on
every call, run the wrapper bound to ``flask.current_app``'s Cache. That makes them work with
an app factory and with several apps in one process (each app, its own Cache).

``fl.cached_view(...)`` caches a GET view's response and ``{% freshlink_cache %}`` a template
fragment (see :mod:`freshlink.contrib.flask_views`), keyed and tagged like functions.

``init_app`` also registers the ``flask freshlink`` command group (``stats``, ``invalidate
TAG...``, ``inspect KEY``) and, when configured, a Prometheus metrics endpoint
(``FRESHLINK_METRICS = registry``) and a "report stale" endpoint (``FRESHLINK_REPORT_STALE``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..cache import Cache
from ..errors import ConfigurationError, MissingDependencyError
from ..handles import UNSET
from ._payload import require_prometheus
from ._plugin import HELP, CommandFailed, PluginState, Reply, metrics, report_stale, run_command
from ._proxy import Bindings, CacheProxy
from .flask_views import install_jinja, make_cached_view
from .reports import StaleReporters
from .settings import build_cache, parse_settings

try:
    import click
    from flask import Flask, Response, current_app, has_app_context, jsonify, request
    from flask.cli import AppGroup
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise MissingDependencyError(
        "freshlink.contrib.flask needs Flask: pip install 'freshlink[flask]'"
    ) from exc

__all__ = ["EXTENSION_KEY", "Freshlink", "FreshlinkState", "cli"]

#: The key of the per-app state in ``app.extensions``.
EXTENSION_KEY = "freshlink"

F = TypeVar("F", bound=Callable[[], object])
V = TypeVar("V", bound=Callable[..., Any])


def _label(key: str) -> str:
    return "FRESHLINK_" + key.upper()


#: One app's freshlink state: its Cache, parsed settings, stale reports and rate limiter.
FreshlinkState = PluginState


class Freshlink(CacheProxy):
    """The Flask extension: decorators that bind to the current app's Cache at call time."""

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        super().__init__(self._current_state)
        # Constructor options are defaults; each app's FRESHLINK_* config keys override them.
        self.options: dict[str, Any] = {k.lower(): v for k, v in options.items()}
        self._reporters = StaleReporters()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Build ``app``'s Cache from its config and register the CLI and opt-in endpoints."""
        if EXTENSION_KEY in app.extensions:
            raise ConfigurationError(f"freshlink is already initialised on app {app.name!r}")
        raw: dict[str, Any] = {**self.options, **app.config.get_namespace("FRESHLINK_")}
        settings = parse_settings(raw, _label)
        if settings.metrics is not None:
            require_prometheus()
        try:
            cache = build_cache(settings)
        except ConfigurationError as exc:
            raise ConfigurationError(f"freshlink config of app {app.name!r}: {exc}") from exc
        app.extensions[EXTENSION_KEY] = FreshlinkState(cache, settings, self._reporters)
        app.cli.add_command(cli)
        install_jinja(app.jinja_env, lambda: _state(current_app).cache)
        if settings.metrics is not None:
            app.add_url_rule(settings.metrics_url, "freshlink_metrics", _metrics_view)
        if settings.report_stale:
            app.add_url_rule(
                settings.report_stale_url,
                "freshlink_report_stale",
                _report_stale_view,
                methods=["POST"],
            )

    def state(self, app: Flask | None = None) -> FreshlinkState:
        """The freshlink state of ``app`` (default: ``flask.current_app``)."""
        if app is None:
            if not has_app_context():
                raise RuntimeError(
                    "freshlink: no Flask application context. Decorated functions use the "
                    "current app's Cache; call them inside a request, a CLI command or "
                    "`with app.app_context():`"
                )
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        return _state(app)

    def _current_state(self) -> Bindings:
        return self.state()

    def get_cache(self, app: Flask | None = None) -> Cache:
        """The Cache of ``app`` (default: the current app)."""
        return self.state(app).cache

    def close(self, app: Flask | None = None) -> None:
        """Close ``app``'s Cache (default: the current app's)."""
        self.state(app).close()

    def cached_view(
        self,
        ttl: Any = UNSET,
        *,
        tags: Iterable[str] = (),
        vary: Iterable[str] = (),
        query: bool | Iterable[str] = True,
        per_user: Callable[[], Any] | bool = False,
        name: str | None = None,
        version: str | int | None = None,
    ) -> Callable[[V], V]:
        """Cache a GET view's response in the current app's Cache, keyed and tagged.

        The key is the view, host, path and query (``query=``: False, or the parameter names
        kept), the request headers named in ``vary=``, and with ``per_user=`` (a function
        returning the user's id) the user. ``tags`` are templates over the URL parameters (and
        ``{user}``). A response that sets a cookie, is private, or reads the session or cookies
        without ``per_user=`` is returned but not stored (logged); see the Flask guide. The key
        also holds a hash of the view's code and ``version=`` (bump it when only a template the
        view renders changed), so a deploy never serves the old code's page.
        """
        return make_cached_view(
            lambda: self.get_cache(),
            ttl,
            tags=tags,
            vary=vary,
            query=query,
            per_user=per_user,
            name=name,
            version=version,
        )

    def stale_reporter(self, name: str) -> Callable[[F], F]:
        """Register the refresh run when a user reports the entry ``name`` as stale.

        The function takes no arguments (it reads ``flask.request`` / ``flask.g`` to know the
        current user) and typically calls ``my_cached_function.refresh(user_id)``.
        """
        return self._reporters.register(name)

    @property
    def reporters(self) -> Mapping[str, Callable[[], object]]:
        """The registered stale reporters by name."""
        return self._reporters


def _state(app: Flask) -> FreshlinkState:
    state = app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, FreshlinkState):
        raise ConfigurationError(
            f"freshlink is not initialised on app {app.name!r}: call Freshlink().init_app(app)"
        )
    return state


# ---------------------------------------------------------------------------- endpoints


def _respond(reply: Reply) -> Response:
    response = jsonify(reply.body) if reply.body is not None else Response()
    response.status_code = reply.status
    response.headers.update(reply.headers)
    return response


def _metrics_view() -> Response:
    payload = metrics(_state(current_app))
    if payload is None:  # the route is only added with a registry; a late config change
        return Response(status=404)
    return Response(payload[0], content_type=payload[1])


def _safe_next(target: str) -> bool:
    # Only same-site relative paths: an open redirect would let a link on another site bounce
    # users anywhere through this endpoint.
    if not target.startswith("/") or target.startswith("//"):
        return False
    return not urlsplit(target).netloc and "\\" not in target


def _report_stale_view() -> Response:
    payload = request.get_json(silent=True) if request.is_json else None
    data = payload if isinstance(payload, dict) else request.form
    client = request.remote_addr or "unknown"
    return _respond(report_stale(_state(current_app), client, data, _safe_next))


# ---------------------------------------------------------------------------- CLI

cli = AppGroup("freshlink", help="Inspect and control this app's freshlink cache.")


def _run(name: str, *args: Any) -> None:
    try:
        lines = run_command(_state(current_app), name, *args)
    except CommandFailed as exc:
        raise click.ClickException(str(exc)) from exc
    for line in lines:
        click.echo(line)


@cli.command("stats", help=HELP["stats"])
def stats_command() -> None:
    """Show the cache's URL, namespace, read mode, L1 size and breaker state."""
    _run("stats")


@cli.command("invalidate", help=HELP["invalidate"])
@click.argument("tags", nargs=-1, required=True)
def invalidate_command(tags: tuple[str, ...]) -> None:
    """Invalidate every entry stamped with any of TAGS, in every process."""
    _run("invalidate", tags)


@cli.command("inspect", help=HELP["inspect"])
@click.argument("key")
def inspect_command(key: str) -> None:
    """Show the stored entry of KEY with its stamped and current generations."""
    _run("inspect", key)
