"""A record an agent could not process (topic ``pipeline.dlq``), kept byte for byte."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from schemas.base import Record
from schemas.fields import UtcDatetime, utc_now

__all__ = ["DeadLetter"]


class DeadLetter(Record):
    """Where the record came from, why it failed, and its exact key and value bytes.

    In JSON the bytes are base64 (URL-safe alphabet; both alphabets are accepted on reading), so
    values that are not UTF-8 survive. Read dead letters with ``model_validate_json``: a dict from
    ``json.loads`` holds the base64 text, not the bytes.
    """

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    source_topic: str = Field(min_length=1)
    partition: int = Field(ge=-1, description="-1 when the record did not come from a topic")
    offset: int = Field(ge=-1, description="-1 when the record did not come from a topic")
    key: bytes | None = None
    raw: bytes
    reason: str = Field(min_length=1)
    error_type: str
    agent: str
    at: UtcDatetime = Field(default_factory=utc_now)
