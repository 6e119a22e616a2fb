"""The SQL store's tables as it finds them at open (created when missing, of its schema
version, a SQLite file that can be written), and where its versions come from: a sequence on
PostgreSQL (each write takes one without waiting for another's commit), the ``versions`` row
of ``meta`` on SQLite and wherever the sequence cannot be made or used; and the writes that
take a version (a save, logins moved in)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Sequence as SQLSequence
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateSequence

from ..errors import ConfigurationError, StoreUnavailable
from ..signals import logger
from .base import Stored
from .sqldirect import Executes
from .sqlengine import unavailable
from .sqlschema import SCHEMA_VERSION, VERSION_GAP, Schema
from .sqlstatements import Statements, bind

__all__ = ["FAILURES", "Found", "moved_in", "open_tables", "saved", "unwritable"]

#: What a database that is away, locked or damaged raises (``sqlite3``'s for our BEGIN).
FAILURES = (SQLAlchemyError, OSError, sqlite3.Error)

#: PostgreSQL's SQLSTATEs of a sequence that another process created at the same moment.
CREATED_MEANWHILE = ("23505", "42P07")


class Found(NamedTuple):
    """What a store found at open: whether writes take versions from the sequence, and
    whether this role may move it (to keep versions above logins moved in)."""

    sequenced: bool
    movable: bool


def open_tables(connection: Connection, schema: Schema, sql: Statements, where: str) -> Found:
    """Create what is missing (tables, their first ``meta`` rows, on PostgreSQL the sequence)
    and refuse tables of another schema version, in one transaction."""
    meta = schema.meta
    schema.metadata.create_all(connection)
    rows = connection.execute(select(meta.c.name, meta.c.value)).all()
    found: dict[str, int] = {str(name): int(value) for name, value in rows}
    for name, value in (("schema", SCHEMA_VERSION), ("versions", 0)):
        if name not in found:
            connection.execute(meta.insert().values(name=name, value=value))
    version = found.get("schema", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ConfigurationError(
            f"The token tables {schema.prefix}* in {where} are schema version {version}; this "
            f"quart-spotify-auth uses version {SCHEMA_VERSION}. Print the tables it needs with "
            "`python -m quart_spotify_auth schema` and migrate yours to them (or drop them: "
            "every user logs in again)."
        )
    if connection.dialect.name != "postgresql":
        return Found(False, False)
    return _sequence(connection, schema, sql, found.get("versions"), where)


async def unwritable(
    write: Callable[[Callable[[Any], Any]], Awaitable[Any]], schema: Schema, where: str
) -> StoreUnavailable | None:
    """One write that changes nothing (``write(work)``: in a transaction), at start: a SQLite
    file that opens but cannot be written (read-only, immutable) is said now, with its fix,
    rather than by the first login's 503; reads go on (a read-only copy can still be listed or
    migrated from). What it raised, or None."""
    meta = schema.meta
    touched = meta.update().where(meta.c.name == "schema").values(value=meta.c.value)
    try:
        await write(lambda c: c.execute(touched))
    except FAILURES as exc:
        error = unavailable("sqlite", where, exc)
        logger.error(
            "The token store can be read but not written (%s). Logins and renewals get 503 "
            "until it can; nothing has to be restarted.",
            "; ".join(error.__notes__),
        )
        return error
    return None


def _sequence(
    connection: Connection, schema: Schema, sql: Statements, counted: int | None, where: str
) -> Found:
    """PostgreSQL: whether writes can take their versions from the sequence, created when
    missing 2**32 above the tables' counter ``counted`` (so processes of an earlier release,
    still counting on the row in a rolling upgrade, never give a version it gives). Writes
    count on the row as before, and the log says what to run, when it cannot be created (no
    right to, a read-only server) or used, or stands at or below the counter (made by hand,
    starting at 1)."""
    named, first = sql.sequence_named, (counted or 0) + VERSION_GAP
    if not connection.dialect.has_sequence(connection, schema.versions.name):
        try:
            with connection.begin_nested():  # a refusal leaves the transaction usable
                made = SQLSequence(schema.versions.name, start=first)
                connection.execute(CreateSequence(made))
        except SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None)  # asyncpg, psycopg: sqlstate; psycopg2: pgcode
            if (getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)) in (
                CREATED_MEANWHILE
            ):
                raise  # by another process: this one's second try finds it
            fix = f"Run `CREATE SEQUENCE {named} START WITH {first}` as the tables' owner"
            why = f"it cannot create the sequence {named} ({type(orig or exc).__name__})"
            return _counting(where, why, fix)
        return Found(True, True)
    state = connection.execute(sql.sequence_state, {"name": named}).first()
    usable, position, movable = state if state is not None else (False, None, False)
    if not usable:
        return _counting(where, f"it may not use the sequence {named}", "")
    if position is not None and position <= (counted or 0):
        fix = f"Run `SELECT setval('{named}', {first})` as the tables' owner"
        why = f"the sequence {named} stands at {position}, not above the {counted} versions "
        return _counting(where, why + "the tables' counter gave", fix)
    return Found(True, bool(movable))


def _counting(where: str, reason: str, fix: str) -> Found:
    """Writes count their versions on the meta row: said once, with ``fix``."""
    grant = "grant USAGE on the sequence to this role, then restart"
    advice = f"{fix}, and {grant}" if fix else grant[0].upper() + grant[1:]
    logger.warning(
        "The token store in %s counts versions on a row, as earlier releases did: %s. Each "
        "login and refresh then waits for the one before it to commit. %s.",
        where, reason, advice,
    )  # fmt: skip
    return Found(False, False)


def saved(connection: Executes, sql: Statements, old: bool, row: dict[str, Any]) -> int | None:
    """A login's upsert, or (``old``) a refresh over version ``row["old"]``: the version it
    was stored at, None when another version is there."""
    statement = sql.swap if old else sql.upsert
    if sql.sequenced:  # the statement takes its version, and returns it
        version = connection.execute(statement, bind(**row)).scalar()
        return None if version is None else int(version)
    # one counter, taken first: each write waits for the one before to commit
    version = int(connection.execute(sql.next_version).scalar_one())
    return version if connection.execute(statement, bind(**row, version=version)).rowcount else None


def moved_in(
    connection: Executes,
    sql: Statements,
    moved: Sequence[tuple[Stored, float]],
    now: float,
    channel: str | None,
) -> list[str]:
    """Logins moved in as they are (``(row, expires)``; none expired by ``now``), each over no
    newer version; versions given from now on stay above theirs. The keys taken, each
    notified on PostgreSQL's ``channel``."""
    adopted = []
    for row, expires in moved:
        values = bind(key=row.key, version=row.version, record=row.blob, due=row.due)
        values |= bind(used=row.used, expires=expires)
        if expires > now and connection.execute(sql.adopt, values).rowcount == 1:
            adopted.append(row.key)
            if channel is not None:
                connection.execute(sql.notify, bind(channel=channel, key=row.key))
    top = max((row.version for row, _ in moved), default=0)
    connection.execute(sql.versions_above, bind(top=top))
    if sql.sequence_above is not None:
        connection.execute(sql.sequence_above, bind(top=top))
    return adopted
