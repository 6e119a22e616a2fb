"""Configuration: each mistake raises at init_app with a message that says the fix."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from quart import Quart

from quart_spotify_auth import DEFAULTS, ConfigurationError, SpotifyAuth
from quart_spotify_auth.config import load_settings, unknown_keys
from quart_spotify_auth.routes import spotify_blueprint


def _app(**config: Any) -> Quart:
    app = Quart(__name__)
    app.secret_key = "test-secret-key"
    app.config.update({"SPOTIFY_CLIENT_ID": "id", "SPOTIFY_TOKEN_STORE": "memory", **config})
    return app


def test_defaults_work() -> None:
    app = _app()
    SpotifyAuth(app)
    settings = app.extensions["QUART_SPOTIFY_AUTH"].settings
    assert settings.redirect_uri == "http://127.0.0.1:5000/callback/"
    assert settings.use_pkce  # no secret: a public client
    assert settings.auto_renew
    assert settings.accounts_url == "https://accounts.spotify.com"


def test_missing_client_id() -> None:
    app = _app(SPOTIFY_CLIENT_ID=None)
    with pytest.raises(ConfigurationError, match="SPOTIFY_CLIENT_ID is not set"):
        SpotifyAuth(app)


def test_client_id_and_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "env-id")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", "env-secret")
    app = _app(SPOTIFY_CLIENT_ID=None)
    SpotifyAuth(app)
    settings = app.extensions["QUART_SPOTIFY_AUTH"].settings
    assert (settings.client_id, settings.client_secret) == ("env-id", "env-secret")
    assert settings.use_pkce  # for confidential clients too, by default
    assert "env-secret" not in repr(settings)


def test_the_service_urls_and_redirect_uri_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # So an example or a deployed app is pointed at the fake (or a proxy) without an edit.
    monkeypatch.setenv("SPOTIFY_ACCOUNTS_URL", "http://127.0.0.1:5001")
    monkeypatch.setenv("SPOTIFY_API_URL", "http://127.0.0.1:5001/v1")
    monkeypatch.setenv("SPOTIFY_REDIRECT_URI", "http://127.0.0.1:8000/callback/")
    settings = load_settings({"SPOTIFY_CLIENT_ID": "id"}, {})
    assert settings.accounts_url == "http://127.0.0.1:5001"
    assert settings.api_url == "http://127.0.0.1:5001/v1"
    assert settings.redirect_uri == "http://127.0.0.1:8000/callback/"
    # app.config still wins over the environment.
    configured = load_settings(
        {"SPOTIFY_CLIENT_ID": "id", "SPOTIFY_ACCOUNTS_URL": "https://accounts.spotify.com"}, {}
    )
    assert configured.accounts_url == "https://accounts.spotify.com"


def test_precedence_argument_then_config_then_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "env-id")
    assert load_settings({}, {}).client_id == "env-id"
    assert load_settings({"SPOTIFY_CLIENT_ID": "cfg"}, {}).client_id == "cfg"
    assert load_settings({"SPOTIFY_CLIENT_ID": "cfg"}, {"SPOTIFY_CLIENT_ID": "arg"}).client_id == (
        "arg"
    )


def test_no_secret_key() -> None:
    app = _app()
    app.secret_key = None
    with pytest.raises(ConfigurationError, match="secret_key"):
        SpotifyAuth(app)


@pytest.mark.parametrize(
    ("uri", "fix"),
    [
        ("http://localhost:5000/callback/", "http://127.0.0.1:5000/callback/"),
        ("http://app.localhost/cb", "127.0.0.1"),
        ("http://example.com/callback", "use https"),
        ("https://example.com/callback#frag", "fragment"),
        ("https://example.com/callback#", "fragment"),
        ("/callback/", "absolute"),
        ("ftp://127.0.0.1/cb", "absolute"),
    ],
)
def test_bad_redirect_uris(uri: str, fix: str) -> None:
    with pytest.raises(ConfigurationError, match="SPOTIFY_REDIRECT_URI") as info:
        SpotifyAuth(_app(SPOTIFY_REDIRECT_URI=uri))
    assert fix in str(info.value)


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:5000/callback/",
        "http://[::1]:8080/cb",
        "https://example.com/callback",
        "https://example.com:8443/auth/spotify?x=1",
    ],
)
def test_good_redirect_uris(uri: str) -> None:
    app = _app(SPOTIFY_REDIRECT_URI=uri)
    SpotifyAuth(app)
    assert app.extensions["QUART_SPOTIFY_AUTH"].settings.redirect_uri == uri


def test_removed_scope_is_flagged_at_startup() -> None:
    with pytest.raises(ConfigurationError, match=r"user-read-birthdate.*Illegal scope"):
        SpotifyAuth(_app(SPOTIFY_SCOPES="streaming user-read-birthdate user-read-email"))


def test_unknown_scope_warns() -> None:
    with pytest.warns(UserWarning, match="user-made-up"):
        SpotifyAuth(_app(SPOTIFY_SCOPES=["streaming", "user-made-up"]))


def test_scopes_as_string_or_list() -> None:
    for value in (
        "streaming user-read-email",
        ["streaming", "user-read-email"],
        "streaming,user-read-email",
    ):
        app = _app(SPOTIFY_SCOPES=value)
        SpotifyAuth(app)
        assert app.extensions["QUART_SPOTIFY_AUTH"].settings.scopes == (
            "streaming",
            "user-read-email",
        )


def test_public_client_cannot_turn_pkce_off() -> None:
    with pytest.raises(ConfigurationError, match="PKCE"):
        SpotifyAuth(_app(SPOTIFY_USE_PKCE=False))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SPOTIFY_HTTP_TIMEOUT", 0),
        ("SPOTIFY_LOGIN_TTL", -1),
        ("SPOTIFY_RETRIES", "many"),
        ("SPOTIFY_RENEW_CONCURRENCY", 0),
    ],
)
def test_bad_numbers(key: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=key):
        SpotifyAuth(_app(**{key: value}))


def test_unknown_option_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="client_idd"):
        SpotifyAuth(_app(), client_idd="x")


def test_every_default_is_documented_in_the_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    for key in DEFAULTS:
        assert f"`{key}`" in readme, key


async def test_using_an_app_without_init_app_says_so() -> None:
    app = Quart(__name__)
    spotify = SpotifyAuth()
    async with app.test_request_context("/"):
        with pytest.raises(RuntimeError, match="init_app"):
            await spotify.get_access_token()


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("SPOTIFY_RENEW_CONCURRENCY", 0.5, "whole number"),
        ("SPOTIFY_RETRIES", 1.5, "whole number"),
        ("SPOTIFY_RETRIES", "nan", "finite"),
        ("SPOTIFY_HTTP_TIMEOUT", float("nan"), "finite"),
        ("SPOTIFY_LOGIN_TTL", float("inf"), "finite"),
        ("SPOTIFY_REFRESH_MARGIN", "-inf", "finite"),
        ("SPOTIFY_TOKEN_IDLE_TTL", 10**400, "finite"),
        ("SPOTIFY_KEEP_WARM", True, "finite"),
        ("SPOTIFY_AUTO_RENEW", "maybe", "True or False"),
        ("SPOTIFY_SHOW_DIALOG", 2, "True or False"),
        ("SPOTIFY_SCOPES", 5, "list of scope names"),
        ("SPOTIFY_SCOPES", b"streaming", "list of scope names"),
        ("SPOTIFY_ACCOUNTS_URL", "http://accounts.example.com", "in clear"),
        ("SPOTIFY_API_URL", "ftp://api.example.com", "https URL"),
        ("SPOTIFY_CLIENT_ID", 12345, "must be a string"),
    ],
)
def test_values_of_the_wrong_kind_fail_loudly(key: str, value: object, says: str) -> None:
    with pytest.raises(ConfigurationError, match=key) as info:
        SpotifyAuth(_app(**{key: value}))
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("false", False), ("False", False), ("0", False), ("off", False), ("true", True), (1, True)],
)
def test_booleans_from_strings(value: object, expected: bool) -> None:
    app = _app(SPOTIFY_AUTO_RENEW=value)
    SpotifyAuth(app)
    assert app.extensions["QUART_SPOTIFY_AUTH"].settings.auto_renew is expected


def test_bytes_credentials_are_text_and_plain_http_is_fine_on_this_machine() -> None:
    app = _app(
        SPOTIFY_CLIENT_ID=b"id",
        SPOTIFY_CLIENT_SECRET=b"secret\n",
        SPOTIFY_ACCOUNTS_URL="http://127.0.0.1:5001/",
    )
    SpotifyAuth(app)
    settings = app.extensions["QUART_SPOTIFY_AUTH"].settings
    assert (settings.client_id, settings.client_secret) == ("id", "secret")
    assert settings.accounts_url == "http://127.0.0.1:5001"


def test_errors_never_show_a_password() -> None:
    with pytest.raises(ConfigurationError, match="SPOTIFY_TOKEN_STORE") as info:
        SpotifyAuth(_app(SPOTIFY_TOKEN_STORE="rediss-ish://user:hunter2@db.example:6379/0"))
    assert "hunter2" not in str(info.value) and "***" in str(info.value)


def test_a_misspelt_key_is_named() -> None:
    with pytest.warns(UserWarning, match="SPOTIFY_SCOPE is not .* did you mean SPOTIFY_SCOPES"):
        SpotifyAuth(_app(SPOTIFY_SCOPE="streaming"))
    with pytest.raises(ConfigurationError, match="SPOTIFY_SCOPE"):
        SpotifyAuth(_app(), SPOTIFY_SCOPE="streaming")
    SpotifyAuth(_app(SPOTIFY_PLAYLIST="an app's own key, unlike any setting"))  # no warning


async def test_what_would_fail_later_is_said_when_the_app_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = _app()
    SpotifyAuth(app)
    app.config["SPOTIFY_SCOPES"] = "streaming"  # too late: already read
    async with app.test_app():
        pass
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "SPOTIFY_SCOPES changed after SpotifyAuth(app)" in said
    assert "No route of this app answers GET /callback/" in said
    caplog.clear()
    app = _app()
    SpotifyAuth(app)
    app.add_url_rule("/callback/", "callback", lambda: "ok")
    async with app.test_app():
        pass
    assert not caplog.records


async def test_a_redirect_uri_on_a_path_the_app_already_serves_is_said_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The blueprint's callback and the app's home page on one path: one of them never
    answers (the demo's home showed 'no state parameter' to every visitor)."""
    app = _app(SPOTIFY_REDIRECT_URI="http://127.0.0.1:5000")
    spotify = SpotifyAuth(app)
    app.add_url_rule("/", "home", lambda: "home")
    app.register_blueprint(spotify_blueprint(spotify))
    async with app.test_app():
        pass
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "GET /, the path of SPOTIFY_REDIRECT_URI, is also a route of this app (home)" in said
    caplog.clear()  # a websocket on the callback's path takes no GET from it: nothing to say
    app = _app()
    spotify = SpotifyAuth(app)
    app.add_websocket("/callback/", "live", lambda: None)
    app.register_blueprint(spotify_blueprint(spotify))
    async with app.test_app():
        pass
    assert "is also a route" not in " ".join(r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("SPOTIFY_CLIENT_SECERT", "SPOTIFY_CLIENT_SECRET"),  # after the prefix
        ("SPOTFY_CLIENT_SECRET", "SPOTIFY_CLIENT_SECRET"),  # in the prefix
        ("SPOITFY_SCOPES", "SPOTIFY_SCOPES"),
        ("SPOTIFYCLIENT_ID", "SPOTIFY_CLIENT_ID"),
        ("spotify_scopes", "SPOTIFY_SCOPES"),  # in its case
    ],
)
def test_misspellings_are_named_in_config_and_environment(key: str, meant: str) -> None:
    assert unknown_keys({key: "x"}, {}) == [
        f"{key} is not a setting of quart-spotify-auth; did you mean {meant}?"
    ]
    (said,) = unknown_keys({}, {key: "x"})
    assert said.startswith(f"The environment variable {key} is not a setting")
    assert f"did you mean {meant}" in said and "'x'" not in said


def test_what_is_no_misspelling_is_left_alone() -> None:
    others = {
        "SPOTIPY_CLIENT_ID": "spotipy's own variable",
        "MY_SPOTIFY_CLIENT_ID": "an app's own key",
        "POSTGRES_TOKEN_STORE": "x",
        "SPOTIFY_PLAYLIST": "x",
        "SPOTIFY_CLIENT_ID": "read from the environment",
        "SECRET_KEY": "x",
    }
    assert unknown_keys(others, others) == []


def test_a_setting_the_environment_cannot_give_is_said_to_be_ignored() -> None:
    (said,) = unknown_keys({}, {"SPOTIFY_SCOPES": "user-top-read"})
    assert "SPOTIFY_SCOPES is ignored" in said and "app.config['SPOTIFY_SCOPES']" in said
    assert unknown_keys({"SPOTIFY_SCOPES": "streaming"}, {"SPOTIFY_SCOPES": "x"}) == []
    (said,) = unknown_keys({}, {"SPOTIFY_SCOPE": "x"})
    assert "did you mean SPOTIFY_SCOPES (which is read only from app.config)?" in said


def test_init_app_warns_about_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTFY_CLIENT_SECRET", "typo")
    with pytest.warns(UserWarning, match="environment variable SPOTFY_CLIENT_SECRET"):
        SpotifyAuth(_app())
    monkeypatch.delenv("SPOTFY_CLIENT_SECRET")
    monkeypatch.setenv("SPOTIFY_SCOPES", "user-top-read")
    with pytest.warns(UserWarning, match="SPOTIFY_SCOPES is ignored"):
        SpotifyAuth(_app())
    SpotifyAuth(_app(), SPOTIFY_SCOPES="streaming")  # given as an argument: nothing ignored


def _flask_app(**config: Any) -> Any:
    from flask import Flask

    app = Flask(__name__)
    app.secret_key = "test-secret-key"
    app.config.update({"SPOTIFY_CLIENT_ID": "id", "SPOTIFY_TOKEN_STORE": "memory", **config})
    return app


def test_warnings_point_at_the_users_line() -> None:
    from quart_spotify_auth.flask import SpotifyAuth as FlaskSpotifyAuth

    def constructed(cls: Any, app: Any) -> None:
        cls(app)

    def initialised(cls: Any, app: Any) -> None:
        cls().init_app(app)

    for cls, make in ((SpotifyAuth, _app), (FlaskSpotifyAuth, _flask_app)):
        for setup in (constructed, initialised):
            app = make(SPOTIFY_SCOPE="streaming", SPOTIFY_SCOPES="made-up-scope")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                setup(cls, app)
            said = {str(w.message).split(" ", 1)[0]: w for w in caught}
            assert set(said) == {"SPOTIFY_SCOPE", "SPOTIFY_SCOPES"}, caught
            for warning in said.values():
                assert (warning.filename, warning.lineno) == (
                    __file__,
                    setup.__code__.co_firstlineno + 1,
                ), (cls, setup, warning)
