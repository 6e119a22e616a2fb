"""Calling the Spotify Web API as the user (or as the app), through the app's HTTP pool."""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, fields
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from .errors import RateLimited, SpotifyUnavailable
from .http import choose
from .retry import Retry, whole_seconds
from .tokens import TokenRecord

if TYPE_CHECKING:
    import httpx

__all__ = ["SpotifyBearer", "Verbs", "WebAPI", "bearer_class"]

R = TypeVar("R")

#: Methods safe to send again after a 5xx or a lost reply.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(eq=False)
class SpotifyBearer:
    """An ``httpx.Auth`` flow: the bearer; one refresh (single-flight) and retry on 401;
    ``Retry-After`` waited out up to the cap on 429, then :class:`~.errors.RateLimited`;
    idempotent requests retried with backoff on 5xx. ``token()`` gives the record to send;
    ``refresh(sent)`` renews it unless somebody did since ``sent`` was read. An ``Auth`` of
    httpx or httpx2 as :func:`bearer_class` makes it (:attr:`WebAPI.auth` is one)."""

    requires_request_body = True  # so retries re-send the body intact
    token: Callable[[], Awaitable[TokenRecord]]
    refresh: Callable[[TokenRecord], Awaitable[TokenRecord]]
    retry: Retry

    def __repr__(self) -> str:
        return "SpotifyBearer()"

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        record = await self.token()
        refreshed = False
        attempts = self.retry.attempts()
        while True:
            request.headers["Authorization"] = f"Bearer {record.access_token}"
            response = yield request
            status = response.status_code
            if status == 401 and not refreshed:
                refreshed = True
                await response.aread()
                record = await self.refresh(record)
                continue
            if status == 429:
                await response.aread()
                if await attempts.retry_after(response):
                    continue
                raise RateLimited(
                    f"Spotify's Web API is rate-limiting this app (429, Retry-After "
                    f"{attempts.wait:g} s). Try again later.",
                    retry_after=whole_seconds(attempts.wait),
                )
            # A 5xx to a POST may have been done: only idempotent methods are sent again.
            if status >= 500 and request.method in IDEMPOTENT:
                await response.aread()
                if await attempts.backoff():
                    continue
            return


@functools.cache
def bearer_class(lib: ModuleType) -> type[SpotifyBearer]:
    """:class:`SpotifyBearer` as an ``Auth`` of ``lib`` (httpx or httpx2: each client takes
    only its own library's)."""
    return cast(type[SpotifyBearer], type("SpotifyBearer", (SpotifyBearer, lib.Auth), {}))


class Verbs(Generic[R]):
    """``get``, ``post``, ``put`` and ``delete`` in terms of ``request``."""

    request: Callable[..., R]  # each subclass defines it: (method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> R:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> R:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> R:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> R:
        return self.request("DELETE", path, **kwargs)


class WebAPI(Verbs[Coroutine[Any, Any, "httpx.Response"]]):
    """A small Web API client bound to one user (or the app) and the app's pooled client.

    .. code-block:: python

        api = await spotify.web_api()
        me = (await api.get("/me")).json()
        await api.put("/me/player/play", json={"uris": [...]})
    """

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, auth: SpotifyBearer, retry: Retry
    ) -> None:
        self._http, self._lib = http, (lib := choose(None, http))  # its library
        self._base = base_url.rstrip("/")
        if not isinstance(auth, lib.Auth):  # the same flow, as an Auth this client takes
            auth = bearer_class(lib)(**{f.name: getattr(auth, f.name) for f in fields(auth)})
        self.auth = auth
        self._retry = retry

    def __repr__(self) -> str:
        return f"WebAPI({self._base!r})"

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send ``method path`` (relative to ``SPOTIFY_API_URL``, or an absolute URL on its
        origin, such as a paging link) with the user's bearer. Unsent requests are retried,
        lost replies only for idempotent methods; then :class:`SpotifyUnavailable`."""
        absolute = path.startswith(("http://", "https://"))
        if absolute and self._origin(path) != self._origin(self._base):
            raise ValueError(f"{path!r} is not on SPOTIFY_API_URL's origin.")
        url = path if absolute else f"{self._base}/{path.lstrip('/')}"
        idempotent = method.upper() in IDEMPOTENT
        attempts, auth = self._retry.attempts(), cast("httpx.Auth", self.auth)
        while True:
            try:
                return await self._http.request(method, url, auth=auth, **kwargs)
            except self._lib.TransportError as exc:
                unsent = isinstance(exc, self._lib.ConnectError)
                if not (unsent or idempotent) or not await attempts.backoff():
                    raise SpotifyUnavailable(
                        f"Spotify's Web API could not be reached ({type(exc).__name__})."
                    ) from exc

    def _origin(self, url: str) -> tuple[str, str, int | None]:
        parsed = self._lib.URL(url)
        return parsed.scheme, parsed.host, parsed.port
