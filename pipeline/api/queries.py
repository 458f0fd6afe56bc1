"""What the API reads from the conversation store, and the rows it owns there.

Every method opens its own short transaction on the store's engine. The store is filled by
the archive (its own consumer group), so what the API shows lags the topics by the archive's
lag, usually well under a second. Errors are SQLAlchemy's; a store that cannot be reached
becomes a 503 in :mod:`pipeline.api.errors`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, false, func, literal, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from pipeline.store.models import (
    AccountRow,
    ChatProfileRow,
    ChatRow,
    DecisionRow,
    GatewayEventRow,
    LLMCallRow,
    ManualMessageRow,
    MessageRow,
    TurnRow,
    UtcDateTime,
)

__all__ = ["LIMIT_REASONS", "ApiStore", "Cursor", "InvalidCursor"]

#: The guard's decisions that are limits (dropped turns), as the stats count them.
LIMIT_REASONS = ("rate_limited_chat", "rate_limited_sender", "token_budget", "loop_guard")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: How long a message may stay ``sending`` (a POST producing it) before the scheduler takes it.
SENDING_GRACE = timedelta(seconds=30)


#: Not the bot's own reply coming back from WhatsApp Web (an inbound row with
#: ``sent_by_bot``): the reply is already there as its outbound row, with its delivery status.
_NOT_AN_ECHO = or_(MessageRow.sent_by_bot.is_(None), MessageRow.sent_by_bot == false())


class InvalidCursor(ValueError):
    """A ``cursor`` this API did not hand out."""


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: its last row's time and id (a chat's ``last_message_at`` and
    ``chat_id``, or a message's ``at`` and ``id``), as an opaque URL-safe string."""

    at: datetime
    chat_id: str

    def encode(self) -> str:
        raw = json.dumps([self.at.isoformat(), self.chat_id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            at, chat_id = json.loads(raw)
            parsed = datetime.fromisoformat(at)
            if parsed.tzinfo is None or not isinstance(chat_id, str):
                raise ValueError
            return cls(parsed.astimezone(UTC), chat_id)
        except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
            # OverflowError: a time beyond years 1 to 9999 once in UTC.
            raise InvalidCursor("not a cursor this API handed out") from exc


def _like(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _percentile(values: list[float], p: float) -> float | None:
    """The ``p`` (0..1) percentile by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1))
    return ordered[rank]


class ApiStore:
    """The API's view of the store at ``engine``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def ping(self) -> None:
        """Raise when the store cannot answer a query."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    # -- chats and messages --------------------------------------------------------
    async def chat(self, chat_id: str) -> ChatRow | None:
        async with self.sessions() as session:
            return await session.get(ChatRow, chat_id)

    async def chat_name(self, chat_id: str) -> str | None:
        """The chat's name (``chats.name``), None when unknown or no such chat."""
        async with self.sessions() as session:
            found = await session.execute(select(ChatRow.name).where(ChatRow.chat_id == chat_id))
            return found.scalar_one_or_none()

    async def chats(
        self, *, q: str | None, cursor: Cursor | None, limit: int
    ) -> tuple[list[ChatRow], Cursor | None]:
        """Chats, the most recent message first; ``q``: only chats with a message whose text
        contains it (case-insensitive). Returns the page and the cursor of the next one."""
        at = func.coalesce(ChatRow.last_message_at, literal(_EPOCH, UtcDateTime))
        query = select(ChatRow, at.label("sort_at")).order_by(at.desc(), ChatRow.chat_id.desc())
        if q:
            query = query.where(
                select(MessageRow.id)
                .where(MessageRow.chat_id == ChatRow.chat_id)
                .where(MessageRow.text.ilike(_like(q), escape="\\"))
                .exists()
            )
        if cursor is not None:
            bound = literal(cursor.at, UtcDateTime)
            query = query.where(
                or_(at < bound, and_(at == bound, ChatRow.chat_id < cursor.chat_id))
            )
        async with self.sessions() as session:
            rows = (await session.execute(query.limit(limit + 1))).all()
        page = [row[0] for row in rows[:limit]]
        following = None
        if len(rows) > limit:
            last = rows[limit - 1]
            following = Cursor(last[1], last[0].chat_id)
        return page, following

    async def messages(
        self, chat_id: str, *, before: datetime | Cursor | None, limit: int
    ) -> list[tuple[MessageRow, int | None]]:
        """The chat's messages before ``before`` (all when None), newest first, each with
        its priority when it was sent by hand. A :class:`Cursor` (the last message's time and
        id) continues exactly where a page ended, also among messages of the same second."""
        query = (
            select(MessageRow, ManualMessageRow.priority)
            .outerjoin(ManualMessageRow, ManualMessageRow.outbound_id == MessageRow.outbound_id)
            .where(MessageRow.chat_id == chat_id, _NOT_AN_ECHO)
            .order_by(MessageRow.at.desc(), MessageRow.id.desc())
            .limit(limit)
        )
        if isinstance(before, Cursor):
            bound = literal(before.at, UtcDateTime)
            query = query.where(
                or_(
                    MessageRow.at < bound,
                    and_(MessageRow.at == bound, MessageRow.id < before.chat_id),
                )
            )
        elif before is not None:
            query = query.where(MessageRow.at < before)
        async with self.sessions() as session:
            return [(row[0], row[1]) for row in (await session.execute(query)).all()]

    async def failed_manual(
        self, chat_id: str, *, before: datetime | Cursor | None, limit: int
    ) -> list[ManualMessageRow]:
        """The chat's manual messages that could not be sent (``failed``), at most
        ``limit``, newest ``send_at`` first: the same page as :meth:`messages` (a failed
        message sorts by its ``send_at`` and its id ``out|<outbound_id>``)."""
        message_id = literal("out|", String) + ManualMessageRow.outbound_id
        query = (
            select(ManualMessageRow)
            .where(ManualMessageRow.chat_id == chat_id, ManualMessageRow.state == "failed")
            .order_by(ManualMessageRow.send_at.desc(), message_id.desc())
            .limit(limit)
        )
        if isinstance(before, Cursor):
            bound = literal(before.at, UtcDateTime)
            query = query.where(
                or_(
                    ManualMessageRow.send_at < bound,
                    and_(ManualMessageRow.send_at == bound, message_id < before.chat_id),
                )
            )
        elif before is not None:
            query = query.where(ManualMessageRow.send_at < before)
        async with self.sessions() as session:
            return list((await session.execute(query)).scalars())

    async def scheduled(self, chat_id: str) -> list[ManualMessageRow]:
        """Manual messages of the chat still held for their ``send_at``."""
        query = (
            select(ManualMessageRow)
            .where(ManualMessageRow.chat_id == chat_id, ManualMessageRow.state == "scheduled")
            .order_by(ManualMessageRow.send_at.desc())
        )
        async with self.sessions() as session:
            return list((await session.execute(query)).scalars())

    # -- profiles ------------------------------------------------------------------
    async def chat_profile(self, chat_id: str) -> ChatProfileRow | None:
        async with self.sessions() as session:
            return await session.get(ChatProfileRow, chat_id)

    async def save_chat_profile(self, chat_id: str, **values: Any) -> ChatProfileRow:
        """Create or change the chat's profile row with ``values`` (its columns)."""
        async with self.sessions.begin() as session:
            row = await session.get(ChatProfileRow, chat_id)
            if row is None:
                row = ChatProfileRow(chat_id=chat_id, enabled=True, persona=None)
                session.add(row)
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = datetime.now(UTC)
        return row

    async def accounts(self) -> list[tuple[str, AccountRow | None]]:
        """Every account the store knows (from profiles, chats and gateway events)."""
        async with self.sessions() as session:
            profiles = {
                r.account_id: r for r in (await session.execute(select(AccountRow))).scalars()
            }
            seen = set(profiles)
            for column in (ChatRow.account_id, GatewayEventRow.account_id):
                found = await session.execute(select(column).where(column.is_not(None)).distinct())
                seen.update(str(value) for (value,) in found if value)
        return [(account, profiles.get(account)) for account in sorted(seen)]

    async def account_known(self, account_id: str) -> bool:
        async with self.sessions() as session:
            for query in (
                select(AccountRow.account_id).where(AccountRow.account_id == account_id),
                select(ChatRow.chat_id).where(ChatRow.account_id == account_id),
                select(GatewayEventRow.event_id).where(GatewayEventRow.account_id == account_id),
            ):
                if (await session.execute(query.limit(1))).first() is not None:
                    return True
        return False

    async def account(self, account_id: str) -> AccountRow | None:
        async with self.sessions() as session:
            return await session.get(AccountRow, account_id)

    async def save_account(self, account_id: str, **values: Any) -> AccountRow:
        async with self.sessions.begin() as session:
            row = await session.get(AccountRow, account_id)
            if row is None:
                row = AccountRow(account_id=account_id)
                session.add(row)
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = datetime.now(UTC)
        return row

    # -- manual messages -------------------------------------------------------------
    async def manual_by_key(self, key: str) -> ManualMessageRow | None:
        async with self.sessions() as session:
            found = await session.execute(
                select(ManualMessageRow).where(ManualMessageRow.idempotency_key == key)
            )
            return found.scalar_one_or_none()

    async def add_manual(self, row: ManualMessageRow) -> tuple[ManualMessageRow, bool]:
        """Insert ``row``; when its idempotency key is taken (a retried POST racing the
        first), return the first one's row instead. The bool: True when inserted."""
        try:
            async with self.sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            if row.idempotency_key is None:
                raise
            existing = await self.manual_by_key(row.idempotency_key)
            if existing is None:
                raise
            return existing, False
        return row, True

    async def manual_count(self, chat_id: str, since: datetime, until: datetime) -> int:
        """Manual messages of the chat due in ``[since, until]``."""
        query = select(func.count()).where(
            ManualMessageRow.chat_id == chat_id,
            ManualMessageRow.send_at >= since,
            ManualMessageRow.send_at <= until,
        )
        async with self.sessions() as session:
            return int((await session.execute(query)).scalar_one())

    async def due(self, now: datetime, limit: int = 100) -> list[ManualMessageRow]:
        """Held messages due at ``now``: priority 1 first, then the oldest ``send_at``. A
        message a POST is producing (``sending``) is left to it, unless it has been that
        for :data:`SENDING_GRACE` (the process died between storing and producing it)."""
        query = (
            select(ManualMessageRow)
            .where(
                ManualMessageRow.send_at <= now,
                or_(
                    ManualMessageRow.state == "scheduled",
                    and_(
                        ManualMessageRow.state == "sending",
                        ManualMessageRow.created_at < now - SENDING_GRACE,
                    ),
                ),
            )
            .order_by(ManualMessageRow.priority, ManualMessageRow.send_at)
            .limit(limit)
        )
        async with self.sessions() as session:
            return list((await session.execute(query)).scalars())

    async def mark_produced(self, outbound_id: str) -> None:
        async with self.sessions.begin() as session:
            await session.execute(
                update(ManualMessageRow)
                .where(ManualMessageRow.outbound_id == outbound_id)
                .values(state="produced", produced_at=datetime.now(UTC))
            )

    async def mark_failed(self, outbound_id: str, reason: str) -> None:
        """``failed`` for good, with ``reason`` (at most 2000 characters are kept): the
        scheduler never takes it again."""
        async with self.sessions.begin() as session:
            await session.execute(
                update(ManualMessageRow)
                .where(ManualMessageRow.outbound_id == outbound_id)
                .values(state="failed", failed_at=datetime.now(UTC), failure_reason=reason[:2000])
            )

    async def mark_held(self, outbound_id: str) -> None:
        """Back to ``scheduled``: producing it failed, the scheduler tries again."""
        async with self.sessions.begin() as session:
            await session.execute(
                update(ManualMessageRow)
                .where(ManualMessageRow.outbound_id == outbound_id)
                .values(state="scheduled")
            )

    # -- gateway -----------------------------------------------------------------------
    async def gateway_states(self) -> list[GatewayEventRow]:
        """The latest state event of each gateway, the most recent first."""
        query = (
            select(GatewayEventRow)
            .where(GatewayEventRow.kind == "state")
            .order_by(GatewayEventRow.at.desc())
            .limit(200)
        )
        latest: dict[str, GatewayEventRow] = {}
        async with self.sessions() as session:
            for row in (await session.execute(query)).scalars():
                latest.setdefault(row.gateway, row)
        return list(latest.values())

    # -- stats -------------------------------------------------------------------------
    async def stats(self, now: datetime) -> dict[str, Any]:
        """The dashboard's numbers (see ``routes.Stats``)."""
        hour_ago = now - timedelta(hours=1)
        day_ago = now - timedelta(hours=24)
        async with self.sessions() as session:
            moved = await session.execute(
                select(MessageRow.direction, MessageRow.at).where(
                    MessageRow.at >= hour_ago, _NOT_AN_ECHO
                )
            )
            per_minute: dict[str, Counter[int]] = {"in": Counter(), "out": Counter()}
            for direction, at in moved:
                if at is not None and direction in per_minute:
                    per_minute[direction][int((now - at).total_seconds() // 60)] += 1
            latency = await session.execute(
                select(TurnRow.last_received_at, func.min(MessageRow.sent_at))
                .join(MessageRow, MessageRow.turn_id == TurnRow.turn_id)
                .where(TurnRow.last_received_at >= hour_ago, MessageRow.sent_at.is_not(None))
                .group_by(TurnRow.turn_id, TurnRow.last_received_at)
            )
            latencies = [
                (sent - received).total_seconds() * 1000
                for received, sent in latency
                if sent is not None and received is not None
            ]
            calls = await session.execute(
                select(LLMCallRow.model, LLMCallRow.at, LLMCallRow.total_tokens).where(
                    LLMCallRow.at >= day_ago, LLMCallRow.status != "skipped"
                )
            )
            tokens: dict[str, Counter[str]] = defaultdict(Counter)
            for model, at, total in calls:
                hour = at.replace(minute=0, second=0, microsecond=0).isoformat()
                tokens[model][hour] += int(total or 0)
            drops = await session.execute(
                select(DecisionRow.reason, func.count())
                .where(DecisionRow.reason.in_(LIMIT_REASONS), DecisionRow.received_at >= day_ago)
                .group_by(DecisionRow.reason)
            )
            limit_drops = {reason: 0 for reason in LIMIT_REASONS}
            limit_drops.update({reason: int(count) for reason, count in drops})
        minutes = range(59, -1, -1)  # oldest minute first
        return {
            "messages_per_minute": {
                direction: [per_minute[direction].get(m, 0) for m in minutes]
                for direction in ("in", "out")
            },
            "reply_latency_ms": {
                "p50": _percentile(latencies, 0.5),
                "p95": _percentile(latencies, 0.95),
                "count": len(latencies),
            },
            "tokens_per_hour": {
                model: dict(sorted(hours.items())) for model, hours in sorted(tokens.items())
            },
            "limit_drops": limit_drops,
        }
