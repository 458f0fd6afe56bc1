"""Field types the records share: canonical chat ids, timezone-aware UTC datetimes, and the
one rule of what text is blank."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

from schemas.chat_ids import canonical_chat_id

__all__ = ["ChatId", "UtcDatetime", "is_blank", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def is_blank(text: str) -> bool:
    """True when ``text`` shows nothing: every character is whitespace or an invisible
    format character (Unicode category Cf: zero-width space and joiners, word joiner, BOM,
    soft hyphen, invisible operators, bidi marks...). A joiner between two emoji is not
    blank: the emoji show. Used by the outbound record, the operator API and the LLM
    client alike (an invisible completion counts as empty)."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


#: A chat or person id in canonical form (see :func:`schemas.chat_ids.canonical_chat_id`).
#: No lid map is applied here: the gateway resolves ``@lid`` ids before it builds a record.
ChatId = Annotated[str, AfterValidator(canonical_chat_id)]

#: A datetime with a timezone, stored in UTC. Naive datetimes are refused (their zone is a guess);
#: seconds since the epoch (an int, as WhatsApp's ``t``) are accepted.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
