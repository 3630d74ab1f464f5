"""FastAPI plugin through httpx's ASGI transport on a real Redis: lifespan, Depends, ETag/304,
refusal of authenticated routes, cookies, invalidation, pydantic models and dataclasses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import httpx
import pydantic
import pytest
from fastapi import (
    BackgroundTasks,
    Cookie,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    Security,
    WebSocket,
)
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordBearer
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from freshlink import Cache, ConfigurationError, KeyTemplateError, SerializationError
from freshlink.contrib import sqlalchemy as fsa
from freshlink.contrib.fastapi import (
    CacheDep,
    cache_of,
    cache_response,
    get_cache,
    lifespan,
    shared_dependency,
)
from freshlink.serializers import JsonSerializer, MsgpackSerializer, register_type

pytestmark = pytest.mark.redis

bearer = HTTPBearer()
oauth2 = OAuth2PasswordBearer(tokenUrl="token")


@dataclass(frozen=True)
class User:
    id: int
    name: str


def current_user(creds: Annotated[HTTPAuthorizationCredentials, Depends(bearer)]) -> User:
    return User(int(creds.credentials), f"user{creds.credentials}")


@dataclass
class Link:
    loan_id: int
    token: str
    amount: Decimal = Decimal("0")
    history: list[str] = field(default_factory=list)


class LoanOut(pydantic.BaseModel):
    id: int
    token: str
    link: Link | None = None
    note: str = "none"


@dataclass
class Derived:
    x: int

    def __post_init__(self) -> None:
        self.extra = self.x * 2  # not a field: it would be lost


class Private(pydantic.BaseModel):
    id: int
    _secret: str = pydantic.PrivateAttr(default="s")


@asynccontextmanager
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and an httpx client on its ASGI interface."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


def loan_app(url: str, loads: list[Any], db: dict[int, str]) -> FastAPI:
    app = FastAPI(lifespan=lifespan(url, namespace="fa"))

    @app.get("/loans/{loan_id}")
    @cache_response(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}"])
    async def read_loan(loan_id: int) -> LoanOut:
        loads.append(loan_id)
        if loan_id not in db:
            raise HTTPException(404)
        return LoanOut(id=loan_id, token=db[loan_id], link=Link(loan_id, db[loan_id]))

    @app.post("/loans/{loan_id}/renew")
    async def renew(loan_id: int, token: str, cache: CacheDep) -> dict[str, str]:
        db[loan_id] = token
        await cache.ainvalidate(f"loan:{loan_id}")
        return {"token": token}

    return app


# ----------------------------------------------------------------------------- lifespan


async def test_lifespan_opens_the_cache_and_composes_with_the_apps_own(redis_url: str) -> None:
    seen: list[Any] = []

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        cache = cache_of(app)  # opened before the app's own lifespan runs
        await cache.aset("greeting", "hello")
        seen.append("started")
        app.state.greeting = await cache.aget("greeting")
        yield {"greeting": app.state.greeting}
        seen.append("stopped")

    app = FastAPI(lifespan=lifespan(redis_url, namespace="fa", then=own))

    @app.get("/")
    async def index(request: Request, cache: CacheDep) -> dict[str, Any]:
        return {"state": request.app.state.greeting, "namespace": cache.namespace}

    async with client(app) as c:
        assert isinstance(app.state.freshlink, Cache)
        assert (await c.get("/")).json() == {"state": "hello", "namespace": "fa"}
    assert seen == ["started", "stopped"]
    # What the app's own lifespan yields is the lifespan state (request.state in Starlette).
    async with lifespan(redis_url, namespace="fa", then=own)(app) as state:
        assert state == {"greeting": "hello"}
    assert app.state.freshlink is None  # closed and removed at shutdown
    with pytest.raises(ConfigurationError, match="no freshlink Cache"):
        cache_of(app)


async def test_async_with_cache_closes_it(redis_url: str) -> None:
    async with Cache(redis_url, namespace="fa") as cache:
        await cache.aset("k", 1)
        assert await cache.aget("k") == 1
    with pytest.raises(ConfigurationError, match="not both"):
        lifespan(cache, namespace="x")


async def test_depends_without_lifespan_is_a_clear_error() -> None:
    app = FastAPI()

    @app.get("/")
    async def index(cache: Annotated[Cache, Depends(get_cache)]) -> str:
        return cache.namespace

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        with pytest.raises(ConfigurationError, match="lifespan"):
            await c.get("/")


# ----------------------------------------------------------------------------- ETag / 304


async def test_etag_304_and_invalidation_drops_the_response(redis_url: str) -> None:
    loads: list[Any] = []
    db = {7: "t1"}
    async with client(loan_app(redis_url, loads, db)) as c:
        first = await c.get("/loans/7")
        assert first.status_code == 200
        assert first.json()["token"] == "t1"
        etag = first.headers["etag"]
        assert first.headers["cache-control"] == "no-cache"
        again = await c.get("/loans/7", headers={"If-None-Match": etag})
        assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
        hit = await c.get("/loans/7")
        assert hit.json() == first.json()
        assert hit.headers["etag"] == etag
        assert loads == [7]  # one load for three requests

        db[7] = "t2"  # changed behind the cache's back: still the cached response
        assert (await c.get("/loans/7")).json()["token"] == "t1"
        await c.post("/loans/7/renew", params={"token": "t3"})  # invalidates "loan:7"
        fresh = await c.get("/loans/7", headers={"If-None-Match": etag})
        assert fresh.status_code == 200
        assert fresh.json()["token"] == "t3"
        assert fresh.headers["etag"] != etag
        assert loads == [7, 7]


async def test_an_invalidation_in_another_process_drops_the_response(redis_url: str) -> None:
    # Two apps with their own Cache on one Redis stand for two server processes.
    loads: list[Any] = []
    db = {1: "old"}
    reader, writer = loan_app(redis_url, loads, db), loan_app(redis_url, [], db)
    async with client(reader) as r, client(writer) as w:
        old = await r.get("/loans/1")
        assert old.json()["token"] == "old"
        await w.post("/loans/1/renew", params={"token": "new"})
        after = await r.get("/loans/1", headers={"If-None-Match": old.headers["etag"]})
        assert after.status_code == 200
        assert after.json()["token"] == "new"


async def test_errors_and_posts_are_not_cached(redis_url: str) -> None:
    loads: list[Any] = []
    async with client(loan_app(redis_url, loads, {})) as c:
        assert (await c.get("/loans/9")).status_code == 404
        assert (await c.get("/loans/9")).status_code == 404
        assert loads == [9, 9]


async def test_concurrent_requests_share_one_load(redis_url: str) -> None:
    loads: list[Any] = []
    app = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))

    @app.get("/slow/{n}")
    @cache_response(ttl=60, tags=["slow"])
    async def slow(n: int) -> dict[str, int]:
        loads.append(n)
        await asyncio.sleep(0.05)
        return {"n": n}

    async with client(app) as c:
        replies = await asyncio.gather(*(c.get("/slow/3") for _ in range(20)))
        assert {r.json()["n"] for r in replies} == {3}
        assert len({r.headers["etag"] for r in replies}) == 1
        assert loads == [3]
        await cache_of(app).ainvalidate("slow")
        assert (await c.get("/slow/3")).status_code == 200
        assert loads == [3, 3]


async def test_response_model_still_filters_a_cached_result(redis_url: str) -> None:
    app = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))

    class Public(pydantic.BaseModel):
        id: int

    @app.get("/accounts/{n}", response_model=Public)
    @cache_response(ttl=60)
    def account(n: int) -> Any:  # a sync endpoint: run in the thread pool
        return {"id": n, "password_hash": "x"}

    async with client(app) as c:
        for _ in range(2):  # the miss and the hit
            assert (await c.get("/accounts/5")).json() == {"id": 5}


async def test_returned_response_is_cached_with_its_headers(redis_url: str) -> None:
    loads: list[int] = []
    app = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))

    @app.get("/page/{n}")
    @cache_response(ttl=60, tags=["page:{n}"])
    async def page(n: int) -> Response:
        loads.append(n)
        return Response(f"<p>{n}</p>", media_type="text/html", headers={"X-Page": str(n)})

    async with client(app) as c:
        one, two = await c.get("/page/4"), await c.get("/page/4")
        for r in (one, two):
            assert (r.text, r.headers["x-page"], r.headers["content-type"]) == (
                "<p>4</p>",
                "4",
                "text/html; charset=utf-8",
            )
        assert two.headers["etag"] == one.headers["etag"]
        not_modified = await c.get(
            "/page/4", headers={"If-None-Match": f"*, {one.headers['etag']}"}
        )
        assert not_modified.status_code == 304
        assert loads == [4]


# ----------------------------------------------------------------------------- cookies


async def test_responses_that_set_cookies_are_never_cached(redis_url: str) -> None:
    loads: list[str] = []
    app = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))

    @app.get("/welcome")
    @cache_response(ttl=60)
    async def welcome(response: Response) -> dict[str, str]:
        loads.append("param")
        response.set_cookie("session", f"s{len(loads)}")
        return {"hello": "you"}

    @app.get("/slow-welcome")
    @cache_response(ttl=60)
    async def slow_welcome(response: Response) -> dict[str, str]:
        session = f"s{len(loads)}"
        loads.append("slow")
        await asyncio.sleep(0.05)  # concurrent requests wait on this load (single-flight)
        response.set_cookie("session", session)
        return {"hello": "you"}

    @app.get("/login")
    @cache_response(ttl=60)
    async def login() -> Response:
        loads.append("returned")
        response = Response("in")
        response.set_cookie("session", f"s{len(loads)}")
        return response

    async with client(app) as c:
        for path in ("/welcome", "/login"):
            replies = [await c.get(path) for _ in range(3)]
            cookies = {r.headers["set-cookie"] for r in replies}
            assert len(cookies) == 3  # each response is its own, with its own cookie
            assert not any("etag" in r.headers for r in replies)
        # Requests that shared a load never get its cookie: each runs the endpoint itself.
        together = await asyncio.gather(*(c.get("/slow-welcome") for _ in range(8)))
        assert len({r.headers["set-cookie"] for r in together}) == 8
    assert loads.count("param") == 3
    assert loads.count("returned") == 3


# ----------------------------------------------------------------------------- authentication


def test_a_route_behind_a_security_scheme_is_refused_without_a_per_user_key() -> None:
    with pytest.raises(ConfigurationError, match=r"authentication through creds \(HTTPBearer\)"):

        @cache_response(ttl=60, key="x")
        async def direct(creds: Annotated[HTTPAuthorizationCredentials, Depends(bearer)]) -> str:
            return "x"

    with pytest.raises(ConfigurationError, match=r"user -> creds \(HTTPBearer\)"):

        @cache_response(ttl=60, key="profile")
        async def nested(user: Annotated[User, Depends(current_user)]) -> str:
            return user.name

    with pytest.raises(ConfigurationError, match="Security"):

        @cache_response(ttl=60)
        async def scoped(token: Annotated[str, Security(oauth2, scopes=["me"])]) -> str:
            return token

    with pytest.raises(ConfigurationError, match="cookie"):

        @cache_response(ttl=60, key="page:{page}")
        async def by_cookie(page: int, session: Annotated[str, Cookie()]) -> str:
            return session

    with pytest.raises(ConfigurationError, match="authorization header"):

        @cache_response(ttl=60, key="page:{page}")
        async def by_header(page: int, authorization: Annotated[str, Header()]) -> str:
            return authorization


async def test_a_per_user_key_is_allowed_and_keeps_users_apart(redis_url: str) -> None:
    loads: list[int] = []
    app = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))

    @app.get("/me")
    @cache_response(ttl=60, key="me:{user.id}", tags=["user:{user.id}"])
    async def me(user: Annotated[User, Depends(current_user)]) -> User:
        loads.append(user.id)
        return user

    @app.get("/cart")
    @cache_response(ttl=60)  # the default key contains the cookie: per user
    async def cart(session: Annotated[str, Cookie()]) -> dict[str, str]:
        return {"session": session}

    async with client(app) as c:
        for who in (1, 2, 1, 2):
            r = await c.get("/me", headers={"Authorization": f"Bearer {who}"})
            assert r.json() == {"id": who, "name": f"user{who}"}
            assert r.headers["cache-control"] == "private, no-cache"
        assert loads == [1, 2]
        assert (await c.get("/me")).status_code in (401, 403)  # no credentials: no entry
        for session in ("a", "b", "a"):
            c.cookies.set("session", session)
            assert (await c.get("/cart")).json() == {"session": session}


async def test_reading_credentials_from_the_request_fails_at_the_first_request(
    redis_url: str,
) -> None:
    app = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))

    @app.get("/lang")
    @cache_response(ttl=60, key="lang:{accept_language}")
    async def lang(
        request: Request, accept_language: Annotated[str | None, Header()] = None
    ) -> dict[str, str | None]:
        return {"lang": request.headers.get("accept-language")}  # declared, so in the key

    @app.get("/whoami")
    @cache_response(ttl=60, key="whoami")
    async def whoami(request: Request) -> dict[str, str | None]:
        return {"auth": request.headers.get("Authorization")}

    @app.get("/jar")
    @cache_response(ttl=60, key="jar")
    async def jar(request: Request) -> dict[str, str]:
        return dict(request.cookies)

    async with client(app) as c:
        assert (await c.get("/lang", headers={"Accept-Language": "fr"})).json() == {"lang": "fr"}
        assert (await c.get("/lang", headers={"Accept-Language": "de"})).json() == {"lang": "de"}
        with pytest.raises(ConfigurationError, match="'authorization' header"):
            await c.get("/whoami")
        with pytest.raises(ConfigurationError, match="cookies"):
            await c.get("/jar")


def user_from_header(request: Request) -> str:
    # A hand-written auth dependency: it digs the user out of the Request itself.
    return request.headers.get("authorization", "anon").split()[-1]


def user_via(name: Annotated[str, Depends(user_from_header)]) -> str:
    return name  # one level further down


class UserFrom:
    """A class dependency: FastAPI calls it with the connection."""

    def __init__(self, connection: HTTPConnection) -> None:
        self.name = connection.headers.get("authorization", "anon").split()[-1]


def lang_of(request: Request) -> str:
    return request.headers.get("accept-language", "en")


def proxy_user(x_user: Annotated[str, Header()]) -> str:
    return x_user  # set by an auth proxy: any header a dependency reads may be the user


def socket_user(ws: WebSocket) -> str:
    return ws.headers.get("authorization", "anon")


@shared_dependency
def settings_of(request: Request) -> dict[str, str]:
    return {"site": request.app.title}  # the app's, the same for every caller


def test_a_dependency_that_takes_the_request_is_refused_without_naming_it_in_the_key() -> None:
    with pytest.raises(ConfigurationError, match=r"user -> request \(the Request\)"):

        @cache_response(ttl=60)
        async def me(user: Annotated[str, Depends(user_from_header)]) -> dict[str, str]:
            return {"user": user}

    with pytest.raises(ConfigurationError, match=r"user -> name -> request \(the Request\)"):

        @cache_response(ttl=60, key="me")
        async def deeper(user: Annotated[str, Depends(user_via)]) -> dict[str, str]:
            return {"user": user}

    with pytest.raises(ConfigurationError, match=r"who -> connection \(the HTTPConnection\)"):

        @cache_response(ttl=60)
        async def by_class(who: Annotated[UserFrom, Depends()]) -> dict[str, str]:
            return {"user": who.name}

    with pytest.raises(ConfigurationError, match=r"ws \(the WebSocket\)"):

        @cache_response(ttl=60)
        async def by_socket(user: Annotated[str, Depends(socket_user)]) -> str:
            return user

    with pytest.raises(ConfigurationError, match=r"user -> x_user \(the x-user header\)"):

        @cache_response(ttl=60)
        async def by_proxy(user: Annotated[str, Depends(proxy_user)]) -> str:
            return user

    # Naming one parameter that depends on the caller does not make the others safe.
    with pytest.raises(ConfigurationError, match=r"does not name user\b"):

        @cache_response(ttl=60, key="page:{lang}")
        async def two(
            lang: Annotated[str, Depends(lang_of)], user: Annotated[str, Depends(user_via)]
        ) -> str:
            return lang + user

    # Allowed: the dependency in the key, a shared one, the app's Cache, no Request at all.
    @cache_response(ttl=60, key="page:{lang}")
    async def by_lang(
        lang: Annotated[str, Depends(lang_of)],
        settings: Annotated[dict[str, str], Depends(settings_of)],
        cache: CacheDep,
    ) -> str:
        return lang


async def test_users_through_a_request_dependency_get_their_own_responses(
    redis_url: str,
) -> None:
    loads: list[str] = []
    app = FastAPI(lifespan=lifespan(redis_url, namespace="fa"), title="lending")

    @app.get("/me")
    @cache_response(ttl=60, key="me:{user}")
    async def me(
        user: Annotated[str, Depends(user_via)],
        settings: Annotated[dict[str, str], Depends(settings_of)],
    ) -> dict[str, str]:
        loads.append(user)
        return {"user": user, **settings}

    async with client(app) as c:
        for who in ("alice", "bob", "alice", "bob"):
            r = await c.get("/me", headers={"Authorization": f"Bearer {who}"})
            assert r.json() == {"user": who, "site": "lending"}
            assert r.headers["cache-control"] == "private, no-cache"
        assert loads == ["alice", "bob"]


def pagination(page: int = 1, size: int = 10) -> tuple[int, int]:
    """A dependency reading query parameters the endpoint does not declare."""
    return page, size


def paged(pages: Annotated[tuple[int, int], Depends(pagination)]) -> tuple[int, int]:
    return pages


def test_a_dependency_reading_request_values_the_key_lacks_is_refused() -> None:
    # Two pages differing only in ?page= would share one response: wrong data for everyone.
    with pytest.raises(
        ConfigurationError, match=r"pages -> page \(the request value 'page'\); pages -> size"
    ):

        @cache_response(ttl=60)
        async def loans(pages: Annotated[tuple[int, int], Depends(pagination)]) -> list[int]:
            return list(range(pages[0]))

    with pytest.raises(ConfigurationError, match=r"p -> pages -> page"):

        @cache_response(ttl=60, key="loans")
        async def deeper(p: Annotated[tuple[int, int], Depends(paged)]) -> list[int]:
            return list(range(p[0]))


async def test_request_values_a_dependency_shares_with_the_endpoint_are_keyed(
    redis_url: str,
) -> None:
    app = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))

    @app.get("/loans")
    @cache_response(ttl=60)
    async def loans(
        page: int, size: int, pages: Annotated[tuple[int, int], Depends(pagination)]
    ) -> dict[str, int]:
        return {"page": pages[0], "size": pages[1]}

    async with client(app) as c:
        assert (await c.get("/loans?page=1&size=5")).json() == {"page": 1, "size": 5}
        assert (await c.get("/loans?page=2&size=5")).json() == {"page": 2, "size": 5}


def aliased_page(page: Annotated[int, Query(alias="p")] = 1) -> int:
    """A dependency whose ``page`` FastAPI reads from ``?p=``."""
    return page


def every_page(page: Annotated[list[int] | None, Query()] = None) -> list[int]:
    """A dependency that takes every ``?page=`` value."""
    return page or []


def test_dependency_inputs_are_compared_by_what_fastapi_reads_not_by_python_name() -> None:
    # The endpoint's ``page`` is ?page=, the dependency's is ?p=: /list?p=2 would answer p=1.
    with pytest.raises(ConfigurationError, match=r"pg -> page \(the request value 'p'\)"):

        @cache_response(ttl=60)
        async def listing(pg: Annotated[int, Depends(aliased_page)], page: int = 1) -> Any:
            return {"pg": pg}

    # One ?page= value in the key, all of them in the dependency: ?page=2&page=3 vs ?page=3.
    with pytest.raises(ConfigurationError, match=r"'page', every value"):

        @cache_response(ttl=60)
        async def pages(all_: Annotated[list[int], Depends(every_page)], page: int = 1) -> Any:
            return all_


async def test_an_aliased_dependency_input_is_keyed_by_the_same_alias(redis_url: str) -> None:
    app = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))

    @app.get("/list")
    @cache_response(ttl=60)
    async def listing(
        pg: Annotated[int, Depends(aliased_page)], page: Annotated[int, Query(alias="p")] = 1
    ) -> dict[str, int]:
        return {"pg": pg}

    async with client(app) as c:
        assert (await c.get("/list?p=1")).json() == {"pg": 1}
        assert (await c.get("/list?p=2")).json() == {"pg": 2}


async def test_an_endpoint_taking_the_request_is_keyed_by_its_url(redis_url: str) -> None:
    app = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))
    loads: list[str] = []

    @app.get("/items")
    @cache_response(ttl=60)
    def items(request: Request) -> dict[str, Any]:
        loads.append(str(request.url))
        return {"page": request.query_params.getlist("page"), "path": request.url.path}

    @app.get("/named/{n}")
    @cache_response(ttl=60, key="named", tags=["named"])
    async def named(request: Request) -> dict[str, Any]:
        return {"n": request.path_params["n"], "q": request.query_params.get("q")}

    async with client(app) as c:
        assert (await c.get("/items?page=1")).json()["page"] == ["1"]
        assert (await c.get("/items?page=2")).json()["page"] == ["2"]
        assert (await c.get("/items?page=2&page=3")).json()["page"] == ["2", "3"]
        # The query's order does not matter; a second identical request is a hit.
        assert (await c.get("/items?b=1&a=2")).json()["page"] == []
        assert (await c.get("/items?a=2&b=1")).json()["page"] == []
        assert len(loads) == 4
        # An explicit key still gets the URL: it cannot see what the endpoint reads.
        assert (await c.get("/named/1?q=x")).json() == {"n": "1", "q": "x"}
        assert (await c.get("/named/2?q=y")).json() == {"n": "2", "q": "y"}


async def test_the_request_refuses_the_body_and_headers_that_are_not_in_the_key(
    redis_url: str,
) -> None:
    app = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))
    reads: dict[str, Callable[[Request], Any]] = {
        "accept-language": lambda r: r.headers.get("accept-language"),
        "in": lambda r: "x-tenant" in r.headers,
        "client": lambda r: r.client,
        "scope-client": lambda r: r.scope["client"],
    }
    for name, read in reads.items():

        def endpoint(request: Request, read: Callable[[Request], Any] = read) -> Any:
            return {"got": repr(read(request))}

        app.get(f"/{name}")(cache_response(ttl=60, key=name)(endpoint))

    @app.get("/body")
    @cache_response(ttl=60)
    async def body(request: Request) -> dict[str, Any]:
        return {"body": (await request.body()).decode()}

    @app.get("/json")
    @cache_response(ttl=60)
    async def as_json(request: Request) -> Any:
        return await request.json()

    # A per-user key allows the credentials, not the other headers.
    @app.get("/mine")
    @cache_response(ttl=60, key="mine:{who}")
    async def mine(request: Request, who: Annotated[str, Depends(user_from_header)]) -> Any:
        return {
            "auth": request.headers["authorization"],
            "lang": request.headers["accept-language"],
        }

    async with client(app) as c:
        for name in reads:
            with pytest.raises(ConfigurationError, match="not in its key"):
                await c.get(f"/{name}", headers={"Accept-Language": "fr"})
        with pytest.raises(ConfigurationError, match=r"request.body\(\), which is not in"):
            await c.get("/body")
        with pytest.raises(ConfigurationError, match=r"request.json\(\) \(the body\)"):
            await c.get("/json")
        headers = {"Authorization": "Bearer ada", "Accept-Language": "fr"}
        with pytest.raises(ConfigurationError, match="'accept-language' header, which is not"):
            await c.get("/mine", headers=headers)


async def test_headers_a_dependency_sets_are_not_stored_with_the_response(
    redis_url: str,
) -> None:
    app = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))
    ids = iter(range(100))

    def request_id(response: Response) -> None:
        response.headers["X-Request-Id"] = str(next(ids))

    @app.get("/rid")
    @cache_response(ttl=60)
    async def rid(response: Response, _: None = Depends(request_id)) -> dict[str, int]:
        response.headers["X-Version"] = "1"  # the endpoint's own header: stored and replayed
        return {"ok": 1}

    async with client(app) as c:
        first, second = await c.get("/rid"), await c.get("/rid")
        assert first.headers.get_list("x-request-id") == ["0"]
        assert second.headers.get_list("x-request-id") == ["1"]
        assert second.headers.get_list("x-version") == ["1"]
        assert first.headers["etag"] == second.headers["etag"]  # not a per-request header
        again = await c.get("/rid", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304


class FakeSession:
    """A pure ASGI middleware standing in for SessionMiddleware: the session from a header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            who = dict(scope["headers"]).get(b"x-who", b"nobody").decode()
            scope["session"] = {"user": who}
            scope.setdefault("state", {})["user"] = who
        await self.app(scope, receive, send)


async def test_the_session_state_and_all_headers_of_the_request_are_guarded(
    redis_url: str,
) -> None:
    app = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))
    app.add_middleware(FakeSession)
    reads: dict[str, Callable[[Request], Any]] = {
        "session": lambda r: r.session.get("user"),
        "state": lambda r: r.state.user,
        "scope-headers": lambda r: dict(r.scope["headers"]),
        "scope-get": lambda r: r.scope.get("session"),
        "mapping": lambda r: r["headers"],
        "raw": lambda r: r.headers.raw,
        "items": lambda r: dict(r.headers.items()),
        "values": lambda r: r.headers.values(),
        "copy": lambda r: r.headers.mutablecopy(),
        "keys": lambda r: r.headers.keys(),
    }
    for name, read in reads.items():

        def endpoint(request: Request, read: Callable[[Request], Any] = read) -> Any:
            return {"got": repr(read(request))}

        app.get(f"/{name}")(cache_response(ttl=60, key=name)(endpoint))

    @app.get("/fine/{n}")
    @cache_response(ttl=60, key="fine:{n}")
    async def fine(n: int, request: Request) -> dict[str, Any]:
        return {
            "path": request.url.path,
            "q": request.query_params.get("q"),
            "host": request.headers["host"],
            "url_for": str(request.url_for("fine", n=n)),
        }

    async with client(app) as c:
        for name in reads:
            with pytest.raises(ConfigurationError, match="no per-user part"):
                await c.get(f"/{name}", headers={"X-Who": "alice"})
        r = await c.get("/fine/3?q=x", headers={"Accept-Language": "fr", "X-Who": "alice"})
        assert r.json()["path"] == "/fine/3"
        assert (r.json()["q"], r.json()["host"]) == ("x", "test")
        assert r.json()["url_for"] == "http://test/fine/3"


def db_session() -> Iterator[dict[str, bool]]:
    """A yield dependency, like a database session: FastAPI closes it after the response."""
    state = {"open": True}
    yield state
    state["open"] = False


async def test_a_route_is_never_refreshed_in_the_background_nor_served_stale(
    redis_url: str,
) -> None:
    # The Cache refreshes ahead and serves stale; a route must do neither: a refresh would run
    # the endpoint after FastAPI closed its dependencies (the database session).
    cache = Cache(
        redis_url, namespace="fa", ahead=0.5, stale_while_revalidate=60, stale_if_error=60
    )
    errors: list[Any] = []
    cache.events.on("error", errors.append)
    app = FastAPI(lifespan=lifespan(cache))
    seen: list[bool] = []  # was the session open while the endpoint ran?
    published = {"doc": True}

    @app.get("/item")
    @cache_response(ttl=0.3)
    async def item(db: Annotated[dict[str, bool], Depends(db_session)]) -> dict[str, int]:
        await asyncio.sleep(0.05)
        seen.append(db["open"])
        return {"load": len(seen)}

    @app.get("/doc")
    @cache_response(ttl=0.3)
    async def doc() -> dict[str, str]:
        if not published["doc"]:
            raise HTTPException(404, "unpublished")
        return {"doc": "secret"}

    async with client(app) as c:
        assert (await c.get("/item")).json() == {"load": 1}
        assert (await c.get("/doc")).status_code == 200
        await asyncio.sleep(0.5)  # both entries have expired
        assert (await c.get("/item")).json() == {"load": 2}  # loaded now, not stale
        published["doc"] = False
        gone = await c.get("/doc")
        assert (gone.status_code, gone.json()) == (404, {"detail": "unpublished"})
        assert (await c.get("/doc")).status_code == 404
        published["doc"] = True  # no back-off after an HTTPException: it was an answer
        assert (await c.get("/doc")).json() == {"doc": "secret"}
    assert seen == [True, True]  # the lifespan's close waited for any background refresh
    assert errors == []  # a 404 is the endpoint's answer, not a failure of the loader


async def test_the_etag_changes_with_the_routes_response_model(redis_url: str) -> None:
    class Public(pydantic.BaseModel):
        id: int

    class Full(pydantic.BaseModel):
        id: int
        email: str

    loads: list[int] = []

    @cache_response(ttl=60, key="account:{n}")
    def account(n: int) -> Any:
        loads.append(n)
        return {"id": n, "email": "a@example.org"}

    narrow = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))
    narrow.get("/accounts/{n}", response_model=Public)(account)
    wide = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))
    wide.get("/accounts/{n}", response_model=Full)(account)
    trimmed = FastAPI(lifespan=lifespan(redis_url, namespace="fa"))
    trimmed.get("/accounts/{n}", response_model=Full, response_model_exclude={"email"})(account)

    async with client(narrow) as c:
        first = await c.get("/accounts/5")
        assert first.json() == {"id": 5}
        old = first.headers["etag"]
        assert (await c.get("/accounts/5", headers={"If-None-Match": old})).status_code == 304
    etags = {old}
    for app, body in ((wide, {"id": 5, "email": "a@example.org"}), (trimmed, {"id": 5})):
        async with client(app) as c:  # a deploy that changed the response model
            r = await c.get("/accounts/5", headers={"If-None-Match": old})
            assert (r.status_code, r.json()) == (200, body)
            etags.add(r.headers["etag"])
            again = await c.get("/accounts/5", headers={"If-None-Match": r.headers["etag"]})
            assert again.status_code == 304
    assert len(etags) == 3
    assert loads == [5]  # one stored result, three shapes of it


def test_bad_templates_and_background_tasks_fail_at_decoration() -> None:
    with pytest.raises(KeyTemplateError, match="loan_idd"):

        @cache_response(ttl=60, key="loan:{loan_idd}")
        async def typo(loan_id: int) -> int:
            return loan_id

    with pytest.raises(ConfigurationError, match="background tasks"):

        @cache_response(ttl=60)
        async def later(tasks: BackgroundTasks) -> int:
            return 1


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
async def test_models_and_dataclasses_round_trip_through_redis(
    serializer: str, make_redis_cache: Callable[..., Cache]
) -> None:
    writer, reader = (
        make_redis_cache(serializer=serializer),
        make_redis_cache(serializer=serializer),
    )
    link = Link(7, "t", Decimal("10.50"), ["a", "b"])
    loan = LoanOut(id=7, token="t", link=link)
    await writer.aset("loan", loan)
    await writer.aset("link", link)
    back = await reader.aget("loan")
    assert type(back) is LoanOut
    assert back == loan
    assert type(back.link) is Link
    assert back.link.amount == Decimal("10.50")
    assert back.model_fields_set == {"id", "token", "link"}  # exclude_unset is unchanged
    assert back.model_dump(exclude_unset=True) == loan.model_dump(exclude_unset=True)
    assert await reader.aget("link") == link
    user = User(1, "ada")  # frozen dataclass
    writer.set("user", user)
    assert reader.get("user") == user
    assert type(reader.get("user")) is User


def test_values_that_cannot_be_rebuilt_are_refused_with_their_type() -> None:
    @dataclass
    class Local:
        x: int

    for serializer in (JsonSerializer(), MsgpackSerializer()):
        with pytest.raises(SerializationError, match=r"Local.*defined inside a function"):
            serializer.dumps(Local(1))
        with pytest.raises(SerializationError, match=r"Derived.*not fields: \['extra'\]"):
            serializer.dumps(Derived(1))
        with pytest.raises(SerializationError, match=r"Private.*private attributes"):
            serializer.dumps(Private(id=1))


def test_registered_local_types_round_trip_and_unknown_names_are_refused() -> None:
    @dataclass
    class Point:
        x: int
        y: int

    register_type(Point, "tests.Point")
    for serializer in (JsonSerializer(), MsgpackSerializer()):
        assert serializer.loads(serializer.dumps([Point(1, 2)])) == [Point(1, 2)]
    data = JsonSerializer().dumps(Point(1, 2)).replace(b"tests.Point", b"os:system")
    with pytest.raises(SerializationError, match="no such dataclass or pydantic model"):
        JsonSerializer().loads(data)
    with pytest.raises(ConfigurationError, match="already taken"):
        register_type(User, "tests.Point")
    with pytest.raises(ConfigurationError, match="dataclass or a pydantic model"):
        register_type(int)


# ----------------------------------------------------------------------------- the example


async def test_the_lending_example_through_the_asgi_transport(
    redis_url: str, tmp_path: Path
) -> None:
    from examples.fastapi_lending.app import create_app

    app = create_app(url=redis_url, database=str(tmp_path / "lending.sqlite3"), lifetime=900)
    hooks = app.state.lending.sessions
    assert fsa.installed(hooks) is not None
    async with client(app) as c:
        assert (await c.get("/healthz")).text == "ok"
        assert 'href="/login/1"' in (await c.get("/")).text
        login = await c.get("/login/1")
        assert (login.status_code, login.headers["location"]) == (303, "/my-loan")
        assert c.cookies["borrower"] == "1"
        page = (await c.get("/my-loan")).text
        assert 'data-link-state="expired" data-token="ada-0"' in page  # seeded, now cached

        api = await c.get("/api/loans/1")
        etag = api.headers["etag"]
        assert api.json()["link_token"] == "ada-0"
        assert (await c.get("/api/loans/1", headers={"If-None-Match": etag})).status_code == 304
        mine = await c.get("/api/my-loan")
        assert mine.json()["id"] == 1
        assert mine.headers["cache-control"] == "private, no-cache"

        staff = (await c.get("/staff")).text
        assert 'action="/staff/loans/1/renew"' in staff
        assert 'action="/staff/loans/1/expire"' in staff
        reply = await c.post("/staff/loans/1/renew", headers={"Accept": "application/json"})
        token = reply.json()["token"]
        # The commit invalidated loan:1 and borrower:1 (outbox): every cached view is new.
        page = (await c.get("/my-loan")).text
        assert f'data-link-state="valid" data-token="{token}"' in page
        fresh = await c.get("/api/loans/1", headers={"If-None-Match": etag})
        assert fresh.status_code == 200
        assert fresh.json()["link_token"] == token
        assert (await c.get("/api/my-loan")).json()["link_token"] == token

        form = await c.post("/staff/loans/1/expire")
        assert (form.status_code, form.headers["location"]) == (303, "/staff")
        assert 'data-link-state="expired"' in (await c.get("/my-loan")).text
        assert (await c.post("/staff/loans/99/renew")).status_code == 404
        c.cookies.clear()
        assert (await c.get("/my-loan")).headers["location"] == "/"
    # The app's own lifespan (composed with freshlink's) removed its session hooks.
    assert fsa.installed(hooks) is None
