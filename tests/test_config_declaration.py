"""Each setting is declared once, as a field of ``Settings``: the docs' list of keys, the
environment reading, ``check`` and the stores' defaults all derive from that declaration.

``python tests/test_config_declaration.py`` rewrites the list in docs/configuration.md from it.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from quart_spotify_auth import DEFAULTS, ConfigurationError, Settings
from quart_spotify_auth.config import ENVIRONMENT_KEYS, FIELDS, load_settings
from quart_spotify_auth.stores import STORE_SCHEMES

ROOT = Path(__file__).parent.parent
PAGE = ROOT / "docs" / "configuration.md"
START = "<!-- the settings: generated from Settings in quart_spotify_auth/config.py -->\n"
END = "<!-- end of the settings -->\n"


def field_docs() -> dict[str, str]:
    """Each field's docstring (the string under its declaration), as autodoc reads them."""
    tree = ast.parse((ROOT / "quart_spotify_auth" / "config.py").read_text())
    (body,) = [n.body for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings"]
    docs = {}
    for node, after in itertools.pairwise(body):
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and isinstance(after, ast.Expr):
            docs[target.id] = str(ast.literal_eval(after.value))
    return docs


def _literal(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def render() -> str:
    """The list of settings docs/configuration.md shows: key, default, environment, doc."""
    docs, entries = field_docs(), []
    for key, field in FIELDS.items():
        default = field.metadata["default"]
        try:
            field.metadata["check"](key, default)
            term = f"`{key}` = `{_literal(default)}`"
        except ConfigurationError:  # no default can work: the app must set it
            term = f"`{key}` (required)"
        if field.metadata["env"]:
            term += " · also from the environment"
        entries.append(f"{term}\n: {docs[field.name]}\n")
    return START + "\n" + "\n".join(entries) + "\n" + END


def _shown_on_the_page() -> str:
    page = PAGE.read_text()
    return page[page.index(START) : page.index(END) + len(END)]


def test_the_docs_list_is_the_declaration() -> None:
    assert _shown_on_the_page() == render(), "run: python tests/test_config_declaration.py"


def test_each_setting_has_one_line_of_documentation() -> None:
    docs = field_docs()
    assert set(docs) == {f.name for f in FIELDS.values()}
    for name, doc in docs.items():
        assert doc.strip() and "\n" not in doc and len(doc) <= 90, name


def test_a_default_or_doc_changed_in_one_place_only_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = _shown_on_the_page()
    assert "`SPOTIFY_TOKEN_IDLE_TTL` = `2592000.0`\n" in shown
    field = FIELDS["SPOTIFY_TOKEN_IDLE_TTL"]
    monkeypatch.setattr(field, "metadata", {**field.metadata, "default": 7 * 86400.0})
    assert render() != shown  # the declaration changed, not the page
    monkeypatch.undo()
    assert render() == shown
    assert render() != shown.replace("(30 days) is forgotten", "(a month) is forgotten")


def test_the_derived_names_are_the_declaration() -> None:
    assert list(DEFAULTS) == list(FIELDS) == ["SPOTIFY_" + f.name.upper() for f in fields(Settings)]
    assert DEFAULTS["SPOTIFY_LOGIN_TTL"] == 600 and DEFAULTS["SPOTIFY_CLIENT_ID"] is None
    assert ENVIRONMENT_KEYS == (
        "SPOTIFY_CLIENT_ID",
        "SPOTIFY_CLIENT_SECRET",
        "SPOTIFY_REDIRECT_URI",
        "SPOTIFY_ACCOUNTS_URL",
        "SPOTIFY_API_URL",
        "SPOTIFY_HTTP_LIBRARY",
        "SPOTIFY_TOKEN_STORE",
        "SPOTIFY_TOKEN_ENCRYPTION_KEYS",
    )
    settings = load_settings({"SPOTIFY_CLIENT_ID": "id"})
    assert settings.token_idle_ttl == 30 * 86400 and settings.token_encryption_keys == ()
    assert isinstance(settings.retries, int) and isinstance(settings.renew_concurrency, int)
    with pytest.raises(ConfigurationError, match="SPOTIFY_USE_PKCE is False"):
        Settings(**{**{f.name: getattr(settings, f.name) for f in FIELDS.values()}, "use_pkce": 0})


def test_the_stores_defaults_are_the_settings() -> None:
    from quart_spotify_auth.stores.redis import RedisTokenStore
    from quart_spotify_auth.stores.sql import SQLTokenStore
    from quart_spotify_auth.stores.sqlschema import Schema, create_statements

    for store in (RedisTokenStore, SQLTokenStore):
        given = inspect.signature(store).parameters
        assert given["prefix"].default == DEFAULTS["SPOTIFY_TOKEN_STORE_PREFIX"]
        assert given["idle_ttl"].default == DEFAULTS["SPOTIFY_TOKEN_IDLE_TTL"]
        assert given["migrating"].default == DEFAULTS["SPOTIFY_TOKEN_ENCRYPTION_MIGRATING"]
    max_connections = inspect.signature(RedisTokenStore).parameters["max_connections"]
    assert max_connections.default == DEFAULTS["SPOTIFY_REDIS_MAX_CONNECTIONS"]
    assert Schema().prefix == "quart_spotify_auth_"
    assert create_statements() == create_statements(prefix="quart_spotify_auth_")


@pytest.mark.parametrize(
    ("prefix", "tables"),
    [
        ("quart_spotify_auth:", "quart_spotify_auth_"),
        ("quart_spotify_auth_", "quart_spotify_auth_"),
        ("myapp", "myapp_"),
        ("my-app:", "my_app_"),
        ("app.v2/", "app_v2_"),
        ("a b", "a_b_"),
        ("ü:", "ü_"),
        ("x__", "x__"),
        (":", "_"),
        ("_", "_"),
        ("", ""),
    ],
)
def test_the_sql_table_names_stay_as_they_were(prefix: str, tables: str, tmp_path: Path) -> None:
    # Existing databases keep working: a store opened with the setting, or given prefix=,
    # names its tables as 0.2 did.
    from quart_spotify_auth.stores import open_store
    from quart_spotify_auth.stores.sql import SQLTokenStore

    url = f"sqlite:///{tmp_path}/t.sqlite3"
    settings = load_settings(
        {
            "SPOTIFY_CLIENT_ID": "id",
            "SPOTIFY_TOKEN_STORE": url,
            "SPOTIFY_TOKEN_STORE_PREFIX": prefix,
        }
    )
    for store in (SQLTokenStore(url, prefix=prefix), open_store(settings)):
        schema = store.schema  # type: ignore[attr-defined]
        names = sorted(t.name for t in schema.metadata.sorted_tables)
        assert names == [f"{tables}claims", f"{tables}meta", f"{tables}tokens"]
        assert schema.channel == f"{tables}written"


def test_every_store_scheme_is_accepted_and_opened() -> None:
    for scheme in STORE_SCHEMES:
        kind = STORE_SCHEMES[scheme]  # each with a path it can take (Redis: a database number)
        url = scheme if kind == "memory" else scheme + ("x/0" if kind == "redis" else "x/t.db")
        settings = load_settings({"SPOTIFY_CLIENT_ID": "id", "SPOTIFY_TOKEN_STORE": url})
        assert settings.token_store == url
    with pytest.raises(ConfigurationError, match="not a store this package knows"):
        load_settings({"SPOTIFY_CLIENT_ID": "id", "SPOTIFY_TOKEN_STORE": "mysql://x"})


if __name__ == "__main__":
    text = PAGE.read_text()
    rendered = render()
    if START in text:
        text = text[: text.index(START)] + rendered + text[text.index(END) + len(END) :]
    PAGE.write_text(text)
    print(rendered, end="")
