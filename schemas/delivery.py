"""What happened to an outbound message (topic ``wa.delivery``)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from schemas.base import Record
from schemas.fields import ChatId, UtcDatetime, utc_now

__all__ = ["DeliveryReceipt", "DeliveryStatus"]

DeliveryStatus = Literal["sent", "failed", "duplicate_skipped", "delivered", "read"]


class DeliveryReceipt(Record):
    """The sink's report for one ``outbound_id``; later acks add ``delivered`` and ``read``."""

    outbound_id: str = Field(min_length=1)
    chat_id: ChatId
    account_id: ChatId
    status: DeliveryStatus
    wa_message_id: str | None = Field(None, description="WhatsApp's id of the sent message")
    reason: str | None = Field(None, min_length=1, description="required when status is failed")
    at: UtcDatetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _reason_for_failures(self) -> Self:
        if self.status == "failed" and not self.reason:
            raise ValueError("a failed delivery needs a reason")
        return self
