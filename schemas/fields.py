"""Field types the records share: canonical chat ids and timezone-aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

from schemas.chat_ids import canonical_chat_id

__all__ = ["ChatId", "UtcDatetime", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


#: A chat or person id in canonical form (see :func:`schemas.chat_ids.canonical_chat_id`).
#: No lid map is applied here: the gateway resolves ``@lid`` ids before it builds a record.
ChatId = Annotated[str, AfterValidator(canonical_chat_id)]

#: A datetime with a timezone, stored in UTC. Naive datetimes are refused (their zone is a guess);
#: seconds since the epoch (an int, as WhatsApp's ``t``) are accepted.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
