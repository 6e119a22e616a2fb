"""A job beside ``tests.served_app`` (run with the same environment, in a process of its own):
``python -m tests.job quart USER`` reads, renews and lists USER's login through the Quart app;
``python -m tests.job flask USER`` reads and logs out USER through a Flask app over the same
store. Prints what it saw as one JSON object."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from quart_spotify_auth import SpotifyAuthError


async def quart_job(user_id: str) -> dict[str, Any]:
    from tests.served_app import app, spotify

    seen: dict[str, Any] = {}
    async with app.app_context():
        user = spotify.for_user(user_id)
        try:
            seen["before"] = (await user.get_access_token()).access_token
            await user.force_renewal()
            seen["after"] = (await user.get_access_token()).access_token
        except SpotifyAuthError as error:
            seen["error"] = f"{type(error).__name__} {error.code}"
        seen["logged_in"] = await user.is_logged_in()
        seen["logins"] = [login.as_dict() async for login in spotify.logins()]
    await spotify.close(app)
    return seen


def flask_job(user_id: str) -> dict[str, Any]:
    from tests.apps import make_flask_app

    app, spotify = make_flask_app(
        accounts_url=os.environ["TEST_FAKE_URL"],
        store_url=os.environ.get("TEST_STORE"),
        instance_path=os.environ.get("TEST_INSTANCE"),
        identity=lambda: None,  # keyed by the app's users; none in this job's requests
        SPOTIFY_TOKEN_STORE_PREFIX=os.environ.get("TEST_PREFIX", "quart_spotify_auth:"),
    )
    with app.app_context():
        user = spotify.for_user(user_id)
        seen: dict[str, Any] = {"token": user.get_access_token().access_token}
        seen["keys"] = [login.key for login in spotify.logins()]
        user.logout()
        seen["logged_in"] = user.is_logged_in()
    spotify.close(app)
    return seen


if __name__ == "__main__":
    kind, user_id = sys.argv[1:3]
    found = asyncio.run(quart_job(user_id)) if kind == "quart" else flask_job(user_id)
    print(json.dumps(found))
