"""Request and response bodies of the operator API (the OpenAPI document is made from them).

Requests refuse unknown fields (422 naming the field) and take every value as its own JSON
type only (strict: ``"priority": true`` or ``"enabled": "no"`` are refused, not converted);
times are ISO 8601 strings with a zone, within years 1 to 9999 once in UTC. Texts may not
contain NUL characters (PostgreSQL cannot store them); chat and account ids are canonical
WhatsApp ids (``<digits>@c.us``, ``<id>@g.us``, ``<n>@lid``; see ``schemas/chat_ids.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from schemas.chat_ids import canonical_chat_id
from schemas.fields import is_blank

#: The longest manual message, characters.
MAX_TEXT = 4096
#: The longest persona or system prompt, characters.
MAX_PROMPT = 20_000


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _not_blank(value: str) -> str:
    if is_blank(value):
        raise ValueError("must not be blank (whitespace and invisible characters only)")
    return value


def _iso_text(value: Any) -> Any:
    """Strict JSON types, but a time is a string in JSON: a number (seconds since the epoch,
    which pydantic would take) is refused."""
    if isinstance(value, str | datetime):
        return value
    raise ValueError("must be an ISO 8601 time with a time zone, as a string")


def _in_utc(value: datetime) -> datetime:
    """``value`` in UTC; ValueError when that falls outside years 1 to 9999
    (``9999-12-31T23:59:59-14:00`` is in year 10000 in UTC)."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range: must be within years 1 to 9999 in UTC") from None


#: A time with a zone, as an ISO 8601 string, converted to UTC.
UtcTime = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_in_utc)]


def _chat_id(value: str) -> str:
    _no_nul(value)
    return canonical_chat_id(value)


ChatIdIn = Annotated[
    str,
    Field(min_length=1, max_length=200, examples=["4915112345678@c.us"]),
    AfterValidator(_chat_id),
]
Text = Annotated[str, AfterValidator(_no_nul)]


class Request(BaseModel):
    """A request body: unknown fields and values of another JSON type are refused (422)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class MessageIn(Request):
    """``POST /api/messages``: a message to send by hand."""

    chat_id: ChatIdIn
    text: Annotated[
        str,
        Field(min_length=1, max_length=MAX_TEXT),
        AfterValidator(_no_nul),
        AfterValidator(_not_blank),
    ]
    send_at: UtcTime | None = Field(
        None,
        strict=False,  # a string in JSON; _iso_text refuses anything else
        description="hold the message until then (ISO 8601 with a time zone); none: now",
    )
    priority: int = Field(3, ge=1, le=5, description="1 is sent first among due messages")
    account_id: ChatIdIn | None = Field(
        None, description="the sending account; needed only for a chat the store has not seen"
    )
    override_limits: bool = Field(False, description="send even over the chat's per-minute limit")


class MessageAccepted(BaseModel):
    outbound_id: str
    state: Literal["scheduled", "produced", "failed"] = Field(
        description="failed: it could not be sent (GET the chat's messages for the reason)"
    )
    send_at: datetime
    priority: int


class PauseIn(Request):
    minutes: int = Field(ge=1, le=525_600, description="pause this long (at most a year)")


class ChatProfileIn(Request):
    persona: Annotated[str, Field(max_length=MAX_PROMPT), AfterValidator(_no_nul)] | None = Field(
        None, description="the chat's system prompt; none: the account's (or the default)"
    )
    enabled: bool = Field(True, description="false: the bot never answers in this chat")


class ChatProfile(BaseModel):
    chat_id: str
    persona: str | None
    enabled: bool
    paused_until: datetime | None
    updated_at: datetime | None


class ControlAccepted(BaseModel):
    chat_id: str
    action: str
    paused_until: datetime | None = None


class Chat(BaseModel):
    chat_id: str
    name: str | None = Field(
        None,
        description="the name WhatsApp Web last gave the chat: a group's subject, the "
        "person's contact or push name; none while only the id is known",
    )
    account_id: str | None
    is_group: bool
    first_message_at: datetime | None
    last_message_at: datetime | None
    last_inbound_at: datetime | None
    last_outbound_at: datetime | None


class ChatPage(BaseModel):
    chats: list[Chat]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class Message(BaseModel):
    id: str
    direction: Literal["in", "out"]
    at: datetime | None
    text: str | None
    kind: str | None = Field(description="outbound: reply, notice, fallback, manual")
    type: str | None = Field(description="inbound: WhatsApp's message type")
    event: str | None
    sender_id: str | None
    sender_name: str | None = Field(
        None, description="inbound: the writer's contact or push name, when WhatsApp gave one"
    )
    outbound_id: str | None
    turn_id: str | None
    priority: int | None = Field(description="manual messages: 1 (first) to 5")
    delivery_status: str | None = Field(
        description="scheduled (held), failed, duplicate_skipped, sent, delivered, read"
    )
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_at: datetime | None
    failure_reason: str | None


class MessagePage(BaseModel):
    chat_id: str
    chat_name: str | None = Field(None, description="the chat's `name` (see the chat listing)")
    messages: list[Message]
    next_before: str | None = Field(description="pass as `before` for older messages")


class AccountProfileIn(Request):
    system_prompt: Annotated[str, Field(max_length=MAX_PROMPT), AfterValidator(_no_nul)] | None = (
        Field(None, description="the account's system prompt; none: WABOT_SYSTEM_PROMPT")
    )
    model: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_nul)] | None = (
        Field(
            None,
            description="the LLM model of the account's chats; none: WABOT_LLM_MODEL",
        )
    )
    rate_chat_per_minute: int | None = Field(
        None,
        ge=0,
        le=10_000,
        description="the bot's replies and manual messages per chat and minute in the account's "
        "chats (0: off); none: WABOT_RATE_CHAT_PER_MINUTE",
    )
    enabled: bool = Field(True, description="false: the bot answers in none of its chats")


class AccountProfile(BaseModel):
    account_id: str
    system_prompt: str | None
    model: str | None
    rate_chat_per_minute: int | None
    enabled: bool
    updated_at: datetime | None


class AccountList(BaseModel):
    accounts: list[AccountProfile]


class GatewayStatus(BaseModel):
    gateway: str
    account_id: str | None
    state: str | None
    reason: str | None
    at: datetime
    qr_available: bool


class WhatsAppStatus(BaseModel):
    state: str | None = Field(description="the most recent gateway's state; none: never seen")
    gateways: list[GatewayStatus]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    store: bool
    broker: bool
    gateway_state: str | None
    problems: list[str]


class Stats(BaseModel):
    """The dashboard's numbers. ``messages_per_minute``: ``in`` and ``out`` counts of the
    last 60 minutes, oldest first; ``reply_latency_ms``: a turn's last message received to
    its reply sent, over the last hour; ``tokens_per_hour``: model -> UTC hour -> tokens,
    last 24 hours; ``limit_drops``: reason -> messages dropped, last 24 hours; ``dlq``: the
    dead letters on the topic and the latest reasons; ``gateway_state``: as /readyz."""

    messages_per_minute: dict[str, list[int]]
    reply_latency_ms: dict[str, float | int | None]
    tokens_per_hour: dict[str, dict[str, int]]
    limit_drops: dict[str, int]
    dlq: dict[str, Any]
    gateway_state: str | None
