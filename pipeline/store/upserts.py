"""Idempotent writes: ``INSERT ... ON CONFLICT`` on SQLite and PostgreSQL, one statement a table.

Both dialects have the same ``insert().on_conflict_do_nothing/do_update`` construct; the
merge rules match :mod:`pipeline.store.rows` (first version wins, a decrypted message
replaces its ciphertext placeholder, the furthest delivery status and the earliest time of
each, a chat's earliest and latest message and its latest name), so writing a row set
twice, or two row sets in either order, ends in the same rows. In ``SET``, a bare column
is the stored value and ``excluded.<column>`` the one being written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, case, func, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from pipeline.store.models import (
    ChatRow,
    DecisionRow,
    GatewayEventRow,
    LLMCallRow,
    MessageRow,
    TurnMessageRow,
    TurnRow,
)
from pipeline.store.rows import (
    DELIVERY_COLUMNS,
    DELIVERY_TIME,
    INBOUND_COLUMNS,
    OUTBOUND_COLUMNS,
    RowSet,
)

__all__ = ["write_rows"]

Insert = Any  # sqlite.Insert | postgresql.Insert: the same API


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


CHATS = _table(ChatRow)
MESSAGES = _table(MessageRow)
TURNS = _table(TurnRow)
TURN_MESSAGES = _table(TurnMessageRow)
LLM_CALLS = _table(LLMCallRow)
DECISIONS = _table(DecisionRow)
EVENTS = _table(GatewayEventRow)


async def write_rows(connection: AsyncConnection, rows: RowSet) -> None:
    """Upsert ``rows`` on ``connection`` (inside the caller's transaction)."""
    s = _statements(connection.dialect.name)
    await _run(connection, s.turns, rows.turns.values())
    await _run(connection, s.turn_messages, rows.turn_messages.values())
    await _run(connection, s.llm_calls, rows.llm_calls.values())
    await _run(connection, s.decisions, rows.decisions.values())
    await _run(connection, s.events, rows.events.values())
    await _run(connection, s.inbound, rows.inbound.values())
    await _run(connection, s.outbound, rows.outbound.values())
    await _run(connection, s.deliveries, rows.deliveries.values())
    await _run(connection, s.chats, rows.chats.values())


@dataclass(frozen=True, slots=True)
class _Statements:
    turns: Any
    turn_messages: Any
    llm_calls: Any
    decisions: Any
    events: Any
    inbound: Any
    outbound: Any
    deliveries: Any
    chats: Any


@functools.cache
def _statements(dialect: str) -> _Statements:
    """The upserts of one dialect, built once: building them (``excluded``, column
    proxies) cost more CPU than running a small batch through SQLAlchemy's compiled cache."""
    insert = _insert_for(dialect)
    return _Statements(
        turns=_nothing(insert, TURNS),
        turn_messages=_nothing(insert, TURN_MESSAGES),
        llm_calls=_nothing(insert, LLM_CALLS),
        decisions=_nothing(insert, DECISIONS),
        events=_nothing(insert, EVENTS),
        inbound=_inbound(insert),
        outbound=_outbound(insert),
        deliveries=_deliveries(insert),
        chats=_chats(insert),
    )


def _insert_for(dialect: str) -> Callable[[Table], Insert]:
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise ValueError(f"the store supports SQLite and PostgreSQL, not {dialect}")


#: Rows per statement. SQLAlchemy prepares a statement's parameters on the event loop
#: before the driver runs it, so one statement of 500 rows held the worker's loop (and
#: every agent in it) for tens of ms; between chunks the loop serves the others.
ROWS_PER_STATEMENT = 64


async def _run(connection: AsyncConnection, statement: Any, rows: Iterable[dict[str, Any]]) -> None:
    params = list(rows)
    for start in range(0, len(params), ROWS_PER_STATEMENT):
        await connection.execute(statement, params[start : start + ROWS_PER_STATEMENT])


def _nothing(insert: Callable[[Table], Insert], table: Table) -> Any:
    keys = [column.name for column in table.primary_key.columns]
    return insert(table).on_conflict_do_nothing(index_elements=keys)


def _inbound(insert: Callable[[Table], Insert]) -> Any:
    statement = insert(MESSAGES)
    new = statement.excluded
    content = [c for c in INBOUND_COLUMNS if c != "id"]
    return statement.on_conflict_do_update(
        index_elements=["id"],
        set_={column: new[column] for column in content},
        where=and_(MESSAGES.c.type == "ciphertext", new.type != "ciphertext"),
    )


def _outbound(insert: Callable[[Table], Insert]) -> Any:
    # The row may exist already, made by a delivery receipt with only its delivery columns.
    statement = insert(MESSAGES)
    new = statement.excluded
    content = [c for c in OUTBOUND_COLUMNS if c != "id"]
    return statement.on_conflict_do_update(
        index_elements=["id"],
        set_={c: func.coalesce(MESSAGES.c[c], new[c]) for c in content},
    )


def _deliveries(insert: Callable[[Table], Insert]) -> Any:
    statement = insert(MESSAGES)
    new = statement.excluded
    m = MESSAGES.c
    further = func.coalesce(m.delivery_rank, 0) < new.delivery_rank
    set_: dict[str, Any] = {
        "delivery_status": case((further, new.delivery_status), else_=m.delivery_status),
        "delivery_rank": case((further, new.delivery_rank), else_=m.delivery_rank),
        "wa_message_id": func.coalesce(m.wa_message_id, new.wa_message_id),
        "failure_reason": func.coalesce(m.failure_reason, new.failure_reason),
        "outbound_id": func.coalesce(m.outbound_id, new.outbound_id),
    }
    for column in DELIVERY_TIME.values():
        set_[column] = _earliest(m[column], new[column])
    assert set(set_) | {"id", "direction", "chat_id", "account_id"} == set(DELIVERY_COLUMNS)
    return statement.on_conflict_do_update(index_elements=["id"], set_=set_)


def _chats(insert: Callable[[Table], Insert]) -> Any:
    statement = insert(CHATS)
    new = statement.excluded
    c = CHATS.c
    # The name of the later message; at the same time the greater name (as rows.py merges).
    renamed = and_(
        new.name.is_not(None),
        or_(
            c.name_at.is_(None),
            new.name_at > c.name_at,
            and_(new.name_at == c.name_at, new.name > func.coalesce(c.name, "")),
        ),
    )
    return statement.on_conflict_do_update(
        index_elements=["chat_id"],
        set_={
            "name": case((renamed, new.name), else_=c.name),
            "name_at": case((renamed, new.name_at), else_=c.name_at),
            "account_id": func.coalesce(c.account_id, new.account_id),
            "first_message_at": _earliest(c.first_message_at, new.first_message_at),
            "last_message_at": _latest(c.last_message_at, new.last_message_at),
            "last_inbound_at": _latest(c.last_inbound_at, new.last_inbound_at),
            "last_outbound_at": _latest(c.last_outbound_at, new.last_outbound_at),
        },
    )


def _earliest(stored: Any, new: Any) -> ColumnElement[Any]:
    return case((or_(stored.is_(None), and_(new.is_not(None), new < stored)), new), else_=stored)


def _latest(stored: Any, new: Any) -> ColumnElement[Any]:
    return case((or_(stored.is_(None), and_(new.is_not(None), new > stored)), new), else_=stored)
