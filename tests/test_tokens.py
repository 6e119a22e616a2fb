"""AccessToken and TokenRecord."""

from __future__ import annotations

from quart_spotify_auth import AccessToken, TokenRecord


def test_access_token_unpacks_like_the_seed() -> None:
    record = TokenRecord("tok", "ref", 1000.0, 100.0, frozenset({"streaming"}), 100.0)
    token = record.to_access_token(399.6)
    access, header, scopes, expires_in = token
    assert access == token.access_token == "tok"
    assert header == token.authorization_header == {"Authorization": "Bearer tok"}
    assert scopes == token.scopes == frozenset({"streaming"})
    assert expires_in == token.expires_in == 600  # whole seconds left, rounded down
    assert isinstance(token, AccessToken)
    assert record.to_access_token(2000.0).expires_in == 0


def test_refresh_point_is_before_expiry_never_before_the_midpoint() -> None:
    long = TokenRecord("t", "r", 3600.0, 0.0, frozenset(), 0.0)
    assert long.refresh_at(300) == 3300.0
    assert long.refresh_at(300, jitter=30) == 3270.0
    short = TokenRecord("t", "r", 2.0, 0.0, frozenset(), 0.0)  # a 2-second test token
    assert short.refresh_at(300) == 1.0  # its midpoint, not the moment it was issued
    assert short.refresh_at(300, jitter=30) == 1.0


def test_stale_leaves_the_renewal_window_to_the_renewer() -> None:
    short = TokenRecord("a", "r", 4.0, 0.0, frozenset(), 0.0)  # renewed from 2.0 on
    assert not short.stale(2.5)  # the renewer's turn: a request does not refresh
    assert short.stale(3.7)  # the last tenth of its life: a request refreshes it
    hour = TokenRecord("a", "r", 3600.0, 0.0, frozenset(), 0.0)
    assert not hour.stale(3590.0)
    assert hour.stale(3596.0)  # within ACCESS_MARGIN (5 s) of expiry


def test_a_refresh_reply_without_scope_keeps_the_grant() -> None:
    old = TokenRecord("t", "r", 3600.0, 0.0, frozenset({"streaming"}), 0.0)
    assert old.renewed(TokenRecord("t2", None, 7200.0, 3600.0, frozenset(), 3600.0)).scopes == {
        "streaming"
    }
