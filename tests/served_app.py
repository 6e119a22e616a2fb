"""The test app as a module for hypercorn worker processes (``tests.served_app:app``),
configured by environment variables: ``TEST_FAKE_URL``, ``TEST_PORT``, ``TEST_STORE`` (unset:
the default store, SQLite in ``TEST_INSTANCE``), ``TEST_AUTO_RENEW``, ``TEST_PREFIX``,
``TEST_ENCRYPTION_KEYS``, ``TEST_SECRET_KEY``; with ``TEST_IDENTITY=1``, a request's
``X-Test-User`` header is the app's user id (the ``identity`` hook), else the browser's login."""

from __future__ import annotations

import os

from quart import ResponseReturnValue, jsonify, request

from tests.apps import SECRET_KEY, make_app

app, spotify = make_app(
    accounts_url=os.environ["TEST_FAKE_URL"],
    redirect_uri=f"http://127.0.0.1:{os.environ['TEST_PORT']}/callback/",
    store_url=os.environ.get("TEST_STORE"),
    instance_path=os.environ.get("TEST_INSTANCE"),
    SPOTIFY_AUTO_RENEW=os.environ.get("TEST_AUTO_RENEW", "1") == "1",
    SPOTIFY_TOKEN_STORE_PREFIX=os.environ.get("TEST_PREFIX", "quart_spotify_auth:"),
    SPOTIFY_TOKEN_ENCRYPTION_KEYS=os.environ.get("TEST_ENCRYPTION_KEYS") or None,
    secret_key=os.environ.get("TEST_SECRET_KEY") or SECRET_KEY,
    identity=(lambda: request.headers.get("X-Test-User"))
    if os.environ.get("TEST_IDENTITY")
    else None,
)


@app.route("/worker")
async def worker() -> ResponseReturnValue:
    """This process's pid, and whether its store's feed of the other workers' writes is up
    (until it is, nothing read is kept as a copy)."""
    cache = spotify.core().store.cache
    return jsonify(pid=os.getpid(), hearing=cache is not None and cache.listening)
