"""Every statement the SQL store runs, built once per store (built per call, each cost 120 µs
more, a third of a SQLite transaction). The dialects differ in ``ON CONFLICT`` and ``min``."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Text, bindparam, delete, func, literal, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from .sqlschema import Schema

__all__ = ["Statements", "bind"]


def bind(**values: Any) -> dict[str, Any]:
    """The parameters of a statement (named apart from the columns, as SQLAlchemy needs)."""
    return {f"p_{name}": value for name, value in values.items()}


class Statements:
    """The store's statements for ``schema`` on ``dialect`` (``sqlite`` or ``postgresql``).
    Parameters are named as each attribute's comment says, and passed through :func:`bind`.

    ``sequenced`` (PostgreSQL with its sequence, :attr:`.Schema.versions`): a write takes its
    version from the sequence, once it holds the row, and returns it; else the writer takes
    one first (:attr:`next_version`) and passes it as ``version``."""

    def __init__(self, schema: Schema, dialect: str, *, sequenced: bool = False) -> None:
        self.sequenced = sequenced
        tokens, claims, meta = schema.tokens, schema.claims, schema.meta
        insert: Any = sqlite.insert if dialect == "sqlite" else postgresql.insert
        key: Any = bindparam("p_key")
        now: Any = bindparam("p_now")
        live = tokens.c.expires > now

        # key, now
        self.read = select(tokens.c.version, tokens.c.record).where(tokens.c.key == key, live)
        # key, now, at: used at ``at``, and due no later than that (SQLite: min() of NULL is NULL)
        at: Any = bindparam("p_at")
        least = func.least if dialect == "postgresql" else func.min
        sooner = func.coalesce(least(tokens.c.due, at), at)
        self.mark_used = update(tokens).where(tokens.c.key == key, live).values(used=at, due=sooner)
        saved = ("version", "record", "due", "expires")
        row: dict[str, Any] = {name: bindparam(f"p_{name}") for name in saved}
        # (version: in a sequenced statement, taken where it is evaluated: for an update, after
        # the row is locked, so a key's versions rise in the order its writes commit)
        version: dict[str, Any] = {"version": schema.versions.next_value()} if sequenced else {}
        # key, version, record, due, used, expires: a new login (``used`` kept when None)
        given = insert(tokens).values(row | {"key": key, "used": bindparam("p_used")})
        written = given.values(version)
        upsert = written.on_conflict_do_update(
            index_elements=[tokens.c.key],
            set_={name: written.excluded[name] for name in saved}
            | {"used": func.coalesce(written.excluded.used, tokens.c.used)}
            | version,
        )
        old = tokens.c.version == bindparam("p_old")
        # key, version, record, due, used, expires: a login moved in, over no newer version
        self.adopt = given.on_conflict_do_update(
            index_elements=[tokens.c.key],
            set_={name: given.excluded[name] for name in (*saved, "used")},
            where=tokens.c.version < given.excluded.version,
        )
        # after, now, limit: a page of live logins, by key
        self.page = (
            select(tokens.c.key, tokens.c.version, tokens.c.record, tokens.c.due, tokens.c.used)
            .where(tokens.c.key > bindparam("p_after"), live)
            .order_by(tokens.c.key)
            .limit(bindparam("p_limit"))
        )
        # key, old, version, record, due, expires: only over version ``old``
        swap = update(tokens).where(tokens.c.key == key, old).values(row | version)
        self.upsert, self.swap = upsert, swap
        # key; key, old
        self.delete = delete(tokens).where(tokens.c.key == key)
        self.delete_version = self.delete.where(old)
        #: Each write is one statement that notifies the other processes itself (one
        #: transaction of its own, with no BEGIN and COMMIT to wait for): sequenced, the
        #: upsert and the swap return the version they wrote; the deletes, the key gone.
        self.notifying = sequenced
        if sequenced:
            heard: Any = func.pg_notify(literal(schema.channel), key)

            def notifying(written: Any, *returned: Any) -> Any:
                done = written.returning(*returned).cte("written")
                return select(*[done.c[c.name] for c in returned], heard).select_from(done)

            self.upsert = notifying(upsert, tokens.c.version)
            self.swap = notifying(swap, tokens.c.version)
            self.delete = notifying(self.delete, tokens.c.key)
            self.delete_version = notifying(self.delete_version, tokens.c.key)
        # key, due
        self.reschedule = update(tokens).where(tokens.c.key == key).values(due=bindparam("p_due"))
        # now, limit: the keys due, soonest first (PostgreSQL: none another renewer is
        # leasing this moment); now: when the next one is
        due = (
            select(tokens.c.key, tokens.c.used)
            .where(tokens.c.due <= now, live)
            .order_by(tokens.c.due)
            .limit(bindparam("p_limit"))
        )
        self.due = due.with_for_update(skip_locked=True) if dialect == "postgresql" else due
        # key, until: a key handed out is put off until ``until`` (DUE_LEASE), in the same
        # transaction, so the other renewers take other keys
        self.lease = update(tokens).where(tokens.c.key == key).values(due=bindparam("p_until"))
        # (the first in the index's order, not min(): min() reads every scheduled row)
        self.next_due = (
            select(tokens.c.due)
            .where(tokens.c.due.isnot(None), live)
            .order_by(tokens.c.due)
            .limit(1)
        )
        # now; ended: rows past their expiry, claims ended long ago
        self.sweep_tokens = delete(tokens).where(tokens.c.expires <= now)
        self.sweep_claims = delete(claims).where(claims.c.until <= bindparam("p_ended"))
        # key, holder, until, now, mine (how the owner's own claims start)
        mine: Any = bindparam("p_mine", type_=Text)
        taken = insert(claims).values(
            key=key, holder=bindparam("p_holder"), until=bindparam("p_until")
        )
        self.claim = taken.on_conflict_do_update(
            index_elements=[claims.c.key],
            set_={"holder": taken.excluded.holder, "until": taken.excluded.until},
            where=or_(
                claims.c.until <= now, func.substr(claims.c.holder, 1, func.length(mine)) == mine
            ),
        ).returning(claims.c.holder)
        # key, holder
        self.release = delete(claims).where(
            claims.c.key == key, claims.c.holder == bindparam("p_holder")
        )
        # (none): the next version number
        self.next_version = (
            update(meta)
            .where(meta.c.name == "versions")
            .values(value=meta.c.value + 1)
            .returning(meta.c.value)
        )
        # top: versions given from now on are above it (sequenced: the sequence's as well)
        top: Any = bindparam("p_top")
        self.versions_above = (
            update(meta).where(meta.c.name == "versions", meta.c.value < top).values(value=top)
        )
        # top: sequenced, the sequence moved above it, unless it stands there already (with a
        # margin: what other processes take from it meanwhile is never given again)
        self.sequence_above = None
        # (the name: the prefix's word characters, quoted by the dialect)
        pg: Any = cast(Any, postgresql.dialect)()
        self.sequence_named = named = pg.identifier_preparer.format_sequence(schema.versions)
        if sequenced:
            self.sequence_above = text(
                f"SELECT setval('{named}', CAST(:p_top AS BIGINT) + {2**20}) "  # noqa: S608
                "FROM pg_sequences WHERE format('%I.%I', schemaname, sequencename)::regclass = "
                f"'{named}'::regclass AND coalesce(last_value, start_value - 1) < :p_top"
            )
        # name (the sequence's, quoted): whether this role may take versions from it (USAGE),
        # the last it gave (or the one before its start), and whether it may move it (UPDATE)
        self.sequence_state = text(
            "SELECT has_sequence_privilege(:name, 'USAGE'), "
            "coalesce(last_value, start_value - 1), has_sequence_privilege(:name, 'UPDATE') "
            "FROM pg_sequences "
            "WHERE format('%I.%I', schemaname, sequencename)::regclass = to_regclass(:name)"
        )
        # channel, key: PostgreSQL only
        self.notify = text("SELECT pg_notify(:p_channel, :p_key)")
