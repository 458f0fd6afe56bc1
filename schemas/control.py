"""What an operator wants changed in a chat or an account (topic ``chat.control``).

The operator API writes these; the guard applies them to the ``chat_state`` table in stream
context. A chat's record is keyed by its chat id (so it shares its partition with the chat's
inbound messages); an account's record (``action="account_profile"``) is keyed by the account
id and written once to *every* partition of the topic, so each partition's guard keeps its own
copy of the account's profile next to the chats it owns.
"""

from __future__ import annotations

import uuid
from typing import Literal, Self

from pydantic import Field, model_validator

from schemas.base import Record
from schemas.fields import ChatId, UtcDatetime, utc_now

__all__ = ["ChatControl", "ControlAction"]

#: ``pause`` (until ``until``), ``resume``, ``profile`` (a chat's persona and enabled),
#: ``account_profile`` (an account's system prompt and enabled).
ControlAction = Literal["pause", "resume", "profile", "account_profile"]


def _new_control_id() -> str:
    return uuid.uuid4().hex


class ChatControl(Record):
    """One operator control. ``chat_id`` is required for every action but
    ``account_profile``, which needs ``account_id``; ``pause`` needs ``until``.

    For ``profile``/``account_profile`` the record carries the whole profile: ``persona``
    (a chat's system prompt; for an account its system prompt) None means "no override",
    ``enabled`` None means "leave as it is". An account's profile also carries ``model``
    and ``rate_chat_per_minute`` (None: the worker's settings); version 2 added both.
    """

    schema_version: int = Field(2, ge=1)
    control_id: str = Field(default_factory=_new_control_id, min_length=1)
    action: ControlAction
    chat_id: ChatId | None = None
    account_id: ChatId | None = None
    until: UtcDatetime | None = Field(None, description="pause: quiet until then")
    persona: str | None = Field(
        None, max_length=20_000, description="profile: the system prompt; None: no override"
    )
    enabled: bool | None = Field(None, description="profile: answer in the chat/account or not")
    model: str | None = Field(
        None,
        max_length=200,
        description="account_profile: the LLM model of its chats; None: the configured one",
    )
    rate_chat_per_minute: int | None = Field(
        None,
        ge=0,
        description="account_profile: replies per chat per minute in the account's chats "
        "(0: off); None: the configured WABOT_RATE_CHAT_PER_MINUTE",
    )
    operator: str | None = Field(None, description="name of the API token that sent it")
    at: UtcDatetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.action == "account_profile":
            if self.account_id is None:
                raise ValueError("an account_profile control needs account_id")
        elif self.chat_id is None:
            raise ValueError(f"a {self.action} control needs chat_id")
        if self.action == "pause" and self.until is None:
            raise ValueError("a pause control needs until")
        return self

    @property
    def key(self) -> str:
        """The record's Kafka key: the chat id, or the account id for account_profile."""
        target = self.account_id if self.action == "account_profile" else self.chat_id
        assert target is not None
        return target
