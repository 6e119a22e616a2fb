"""``benchmarks.soak_fake:fake``: the soak's FakeSpotify, with ``BENCH_USERS`` users
``u0 ..`` and a consent page (no auto-approval: each simulated browser picks its own user, as
a person would)."""

from __future__ import annotations

from quart_spotify_auth.testing import make_fake

from .soak_settings import CLIENT_ID, CLIENT_SECRET, USERS

fake = make_fake(
    client_id=CLIENT_ID,
    client_secret=CLIENT_SECRET,
    redirect_uri="http://127.0.0.1/callback/",  # loopback: any port matches
    users=[f"u{i}" for i in range(USERS)],
)
