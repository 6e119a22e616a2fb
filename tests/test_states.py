"""Login states: signed, expiring, bound to nothing stored; the PKCE verifier derived."""

from __future__ import annotations

import pytest

from quart_spotify_auth import InvalidCallback
from quart_spotify_auth.accounts import code_challenge
from quart_spotify_auth.config import load_settings
from quart_spotify_auth.states import MAX_NEXT, LoginStates
from quart_spotify_auth.testing import FakeClock

REDIRECT = "http://127.0.0.1:5000/callback/"


def _states(clock: FakeClock, key: str = "a-secret-key", *, pkce: bool = True) -> LoginStates:
    config = {"SPOTIFY_CLIENT_ID": "an-app", "SPOTIFY_CLIENT_SECRET": "s", "SPOTIFY_USE_PKCE": pkce}
    return LoginStates(key, load_settings({**config, "SPOTIFY_REDIRECT_URI": REDIRECT}, {}), clock)


def test_a_state_opens_to_what_it_was_issued_with() -> None:
    clock = FakeClock(1000)
    states = _states(clock)
    state, pending = states.issue("/playlists?page=2")
    opened = states.open(state)
    assert opened == pending
    assert opened.next_url == "/playlists?page=2" and opened.redirect_uri == REDIRECT
    verifier = opened.code_verifier
    assert verifier is not None and len(verifier) == 43 and code_challenge(verifier)
    # Each login gets its own verifier, and the state does not carry it.
    _, second = states.issue()
    assert second.code_verifier != verifier and second.next_url is None
    assert verifier not in state and len(state) < 200


def test_only_this_apps_unexpired_states_open() -> None:
    clock = FakeClock(1000)
    states = _states(clock)
    state, _ = states.issue()
    for forged in ("forged", state[:-2] + "xx", _states(clock, "another-key").issue()[0]):
        with pytest.raises(InvalidCallback, match="not issued by this app"):
            states.open(forged)
    clock.advance(599)
    assert states.open(state)
    clock.advance(1)
    with pytest.raises(InvalidCallback, match="expired") as info:
        states.open(state)
    assert info.value.code == 400


def test_another_key_derives_other_verifiers() -> None:
    clock = FakeClock(1000)
    state, pending = _states(clock).issue()
    # The same nonce under another key: the signature fails, and so would the verifier.
    assert _states(clock, "k2")._pending("n", None) != _states(clock)._pending("n", None)
    assert _states(clock).open(state) == pending


def test_without_pkce_there_is_no_verifier_and_long_nexts_are_dropped() -> None:
    states = _states(FakeClock(0), pkce=False)
    state, pending = states.issue("/" + "x" * MAX_NEXT)
    assert pending.code_verifier is None and pending.next_url is None
    assert states.open(state) == pending


def test_only_a_long_state_is_compressed_and_each_opens_either_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A usual state is random bits that zlib cannot shrink, and compressing it cost more than
    the rest of issuing it: it is not tried. A long ``next`` is still compressed. Both forms
    open here and with itsdangerous' own serializer (states issued before this change too)."""
    import zlib

    from itsdangerous import URLSafeSerializer

    tried: list[int] = []
    compress = zlib.compress

    def counted(data: bytes, /, level: int = -1, wbits: int = 15) -> bytes:
        tried.append(len(data))
        return compress(data, level, wbits)

    monkeypatch.setattr(zlib, "compress", counted)  # itsdangerous calls it through the module
    clock = FakeClock(1000)
    states = _states(clock)
    short, _ = states.issue("/playlists?page=2")
    assert tried == [] and not short.startswith(".")
    long_next = "/search?q=" + "la " * 300
    long, _ = states.issue(long_next)
    assert len(tried) == 1 and long.startswith(".")
    salt = f"login state for an-app at {REDIRECT}"
    stock = URLSafeSerializer(b"a-secret-key", salt=salt)
    for state, next_url in ((short, "/playlists?page=2"), (long, long_next)):
        assert states.open(state).next_url == next_url
        assert stock.loads(state)["x"] == next_url
    before = stock.dumps({"n": "n" * 43, "e": 1600.0, "x": "/old"})  # issued by 0.2 as released
    assert states.open(before).next_url == "/old"
