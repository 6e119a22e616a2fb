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


def test_expiry_margin_is_capped_at_half_the_lifetime() -> None:
    long = TokenRecord("t", "r", 3600.0, 0.0, frozenset(), 0.0)
    assert not long.is_expired(3000.0, margin=300)
    assert long.is_expired(3301.0, margin=300)
    short = TokenRecord("t", "r", 2.0, 0.0, frozenset(), 0.0)  # a 2-second test token
    assert not short.is_expired(0.5, margin=300)
    assert short.is_expired(1.0, margin=300)


def test_a_refresh_reply_without_scope_keeps_the_grant() -> None:
    old = TokenRecord("t", "r", 3600.0, 0.0, frozenset({"streaming"}), 0.0)
    assert old.renewed(TokenRecord("t2", None, 7200.0, 3600.0, frozenset(), 3600.0)).scopes == {
        "streaming"
    }
