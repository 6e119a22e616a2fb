"""The SQL store's tables, yours to own: ``<prefix>tokens`` (one row per login; only its
``record`` holds what keys would encrypt), ``<prefix>claims`` and ``<prefix>meta``, and on
PostgreSQL the sequence ``<prefix>versions``. Created on first start when missing; printed by
``python -m quart_spotify_auth schema`` for migrations."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    LargeBinary,
    MetaData,
    Sequence,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateSequence, CreateTable

from ..config import DEFAULTS

__all__ = ["SCHEMA_VERSION", "VERSION_GAP", "Schema", "create_statements"]

#: The version of these tables; a store refuses tables of another version (and says what to do).
SCHEMA_VERSION = 1

#: Where PostgreSQL's sequence of versions starts above the tables' counter: processes of an
#: earlier release still counting on the row (a rolling upgrade) never give a version it gives.
VERSION_GAP = 2**32


class Schema:
    """The three tables, under ``SPOTIFY_TOKEN_STORE_PREFIX`` with each non-word character made
    ``_``, and one ``_`` ending it (``myapp`` gives ``myapp_tokens``)."""

    def __init__(self, prefix: str = DEFAULTS["SPOTIFY_TOKEN_STORE_PREFIX"]) -> None:
        name = re.sub(r"\W", "_", prefix)
        self.prefix = prefix = name if not name or name.endswith("_") else name + "_"
        self.metadata = MetaData()
        self.tokens = self._keyed(
            "tokens",
            # Given on every write, never reused: a refresh lands only over its own version.
            Column("version", BigInteger, nullable=False),
            # The token record (JSON; Fernet-encrypted and bound to the key with keys set).
            Column("record", LargeBinary, nullable=False),
            # When the renewer looks at it next (NULL: never); when it was last used.
            Column("due", Double, nullable=True),
            Column("used", Double, nullable=True),
            # When the row is forgotten: idle for SPOTIFY_TOKEN_IDLE_TTL, or at reauthorize_by.
            Column("expires", Double, nullable=False),
        )
        Index(
            f"{prefix}tokens_due",
            self.tokens.c.due,
            postgresql_where=self.tokens.c.due.isnot(None),
            sqlite_where=self.tokens.c.due.isnot(None),
        )
        Index(f"{prefix}tokens_expires", self.tokens.c.expires)
        # Who refreshes a key ("<pid>:<nonce>/<random>", the owner's name first, so it can
        # take its own back), and until when (a claim whose holder died ends on its own then).
        self.claims = self._keyed(
            "claims",
            Column("holder", Text, nullable=False),
            Column("until", Double, nullable=False),
        )
        self.meta = Table(
            f"{prefix}meta",
            self.metadata,
            Column("name", String(32), primary_key=True),  # "schema", "versions"
            Column("value", BigInteger, nullable=False),
        )
        # PostgreSQL: where versions come from. Each write takes one without waiting for any
        # other (the "versions" row of meta, counted up in each write's transaction, made
        # every write wait for the one before to commit: at 300 refreshes a second, 113 ms
        # each). SQLite's writes are one at a time anyway: it counts on the meta row.
        self.versions = Sequence(f"{prefix}versions"[:63])

    def _keyed(self, name: str, *columns: Column[Any]) -> Table:
        """A table of rows by store key: "browser:<opaque id>", "user:<your user id>", "app"."""
        key = Column("key", Text, primary_key=True)
        return Table(f"{self.prefix}{name}", self.metadata, key, *columns)

    @property
    def channel(self) -> str:
        """The PostgreSQL channel every write notifies (a read cache listens to it)."""
        return f"{self.prefix}written"[:63]


def create_statements(
    dialect: str = "postgresql", prefix: str = DEFAULTS["SPOTIFY_TOKEN_STORE_PREFIX"]
) -> str:
    """The SQL that creates the tables for ``dialect`` (``postgresql`` or ``sqlite``), with the
    rows a new database starts with."""
    chosen = {"postgresql": postgresql.dialect, "sqlite": sqlite.dialect}[dialect]()
    schema = Schema(prefix)
    lines = [f"-- quart-spotify-auth token store, schema version {SCHEMA_VERSION} ({dialect})"]
    for table in schema.metadata.sorted_tables:
        lines.append(str(CreateTable(table).compile(dialect=chosen)).strip() + ";")
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            lines.append(str(CreateIndex(index).compile(dialect=chosen)).strip() + ";")
    if dialect == "postgresql":
        first = Sequence(schema.versions.name, start=VERSION_GAP)
        lines.append(str(CreateSequence(first).compile(dialect=chosen)).strip() + ";")
    for name, value in (("schema", SCHEMA_VERSION), ("versions", 0)):
        row = schema.meta.insert().values(name=name, value=value)
        lines.append(str(row.compile(dialect=chosen, compile_kwargs={"literal_binds": True})) + ";")
    return "\n".join(lines) + "\n"
