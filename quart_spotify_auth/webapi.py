"""Calling the Spotify Web API as the user (or as the app), through the app's HTTP pool.

:class:`SpotifyBearer` is an ``httpx.Auth`` flow: it sets the bearer; on a 401 it refreshes
once (single-flight, through the token manager) and retries once; on a 429 it waits out
``Retry-After`` up to a cap and then raises :class:`RateLimited`; on a 5xx or a network error
it retries with backoff. Request bodies are kept, so a retry re-sends them intact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import httpx

from .accounts import backoff_delay, retry_after_seconds
from .errors import SpotifyUnavailable
from .tokens import AccessToken

__all__ = ["RateLimited", "SpotifyBearer", "WebAPI"]

Sleep = Callable[[float], Awaitable[None]]

#: Methods safe to send again after a 5xx or a lost reply.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port


class RateLimited(SpotifyUnavailable):
    """503: the Web API kept answering 429 beyond the wait the app allows."""


class SpotifyBearer(httpx.Auth):
    """Bearer auth with one refresh on 401, bounded waits on 429 and retries on 5xx."""

    requires_request_body = True  # so retries re-send the body intact

    def __init__(
        self,
        token: Callable[[], Awaitable[AccessToken]],
        refresh: Callable[[str], Awaitable[AccessToken]],
        *,
        retries: int = 2,
        backoff: float = 0.2,
        retry_after_cap: float = 5.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._token = token
        self._refresh = refresh
        self._retries = retries
        self._backoff = backoff
        self._cap = retry_after_cap
        self._sleep = sleep

    def __repr__(self) -> str:
        return "SpotifyBearer()"

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        sent = (await self._token()).access_token
        refreshed = False
        failures = 0
        while True:
            request.headers["Authorization"] = f"Bearer {sent}"
            response = yield request
            if response.status_code == 401 and not refreshed:
                refreshed = True
                await response.aread()
                sent = (await self._refresh(sent)).access_token
                continue
            if response.status_code == 429:
                wait = retry_after_seconds(response)
                if wait > self._cap or failures >= self._retries:
                    raise RateLimited(
                        f"Spotify's Web API is rate-limiting this app (429, Retry-After {wait:g} "
                        "s). Try again later.",
                        retry_after=int(wait) + 1,
                    )
                failures += 1
                await response.aread()
                await self._sleep(wait)
                continue
            if (
                response.status_code >= 500
                and failures < self._retries
                and request.method in IDEMPOTENT  # a POST may have been done: not again
            ):
                failures += 1
                await response.aread()
                await self._sleep(backoff_delay(self._backoff, failures))
                continue
            return


class WebAPI:
    """A small Web API client bound to one user (or the app) and the app's pooled client.

    .. code-block:: python

        api = await spotify.web_api()
        me = (await api.get("/me")).json()
        await api.put("/me/player/play", json={"uris": [...]})
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        auth: SpotifyBearer,
        *,
        retries: int = 2,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self.auth = auth
        self._retries = retries
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"WebAPI({self._base!r})"

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send ``method path`` (relative to ``SPOTIFY_API_URL``) with the user's bearer.

        A request that never reached Spotify (connection refused) is retried for any method;
        one whose reply was lost only for idempotent methods (a POST may have been done).
        Absolute URLs (Spotify's paging links) must be on the API's own origin: the bearer
        goes nowhere else. Network failures end as :class:`SpotifyUnavailable`."""
        if path.startswith(("http://", "https://")):
            if _origin(path) != _origin(self._base):
                raise ValueError(f"{path!r} is not on SPOTIFY_API_URL's origin.")
            url = path
        else:
            url = f"{self._base}/{path.lstrip('/')}"
        idempotent = method.upper() in IDEMPOTENT
        for attempt in range(self._retries + 1):
            try:
                return await self._http.request(method, url, auth=self.auth, **kwargs)
            except httpx.TransportError as exc:
                unsent = isinstance(exc, httpx.ConnectError)
                if attempt == self._retries or not (unsent or idempotent):
                    raise SpotifyUnavailable(
                        f"Spotify's Web API could not be reached ({type(exc).__name__})."
                    ) from exc
                await self._sleep(backoff_delay(0.2, attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)
