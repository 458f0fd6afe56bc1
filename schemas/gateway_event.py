"""What the gateway reports about its WhatsApp session (topic ``wa.events``)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from schemas.base import Record
from schemas.fields import ChatId, UtcDatetime, utc_now

__all__ = ["GatewayEvent", "GatewayEventKind", "GatewayState"]

#: The life of one gateway's session, in the order a fresh start goes through it.
GatewayState = Literal[
    "starting", "qr", "authenticated", "ready", "disconnected", "logged_out", "conflict"
]
GatewayEventKind = Literal["state", "ack"]


class GatewayEvent(Record):
    """A state change of the session (``kind="state"``) or acks of sent messages (``"ack"``).

    ``account_id`` is unknown until the first login (the QR stage has no account yet); the
    gateway's ``name`` identifies it in the meantime and is the record's key then.
    """

    gateway: str = Field(min_length=1, description="the gateway's name (one per account)")
    account_id: ChatId | None = None
    kind: GatewayEventKind
    state: GatewayState | None = None
    reason: str | None = Field(None, description="why the state changed, when known")
    qr: str | None = Field(None, description="the QR payload to scan (state qr)")
    ack: int | None = Field(
        None, ge=-1, le=4, description="-1 error, 1 server, 2 delivered, 3 read, 4 played"
    )
    chat_id: ChatId | None = None
    message_ids: list[str] = Field(default_factory=list, description="inner ids (id.id) acked")
    at: UtcDatetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind == "state":
            if self.state is None:
                raise ValueError("a state event needs a state")
            if self.state == "qr" and not self.qr:
                raise ValueError("a qr state event needs the qr payload")
        elif self.ack is None or self.chat_id is None or not self.message_ids:
            raise ValueError("an ack event needs ack, chat_id and message_ids")
        return self
