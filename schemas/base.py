"""The base every record shares: a schema version and the trace_id that follows a message."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

#: Bumped when a record's shape changes in a way old readers cannot take.
SCHEMA_VERSION = 1


def new_trace_id() -> str:
    return uuid.uuid4().hex


class Record(BaseModel):
    """Base of all records: frozen, strict about unknown fields, versioned, traced."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(SCHEMA_VERSION, ge=1)
    trace_id: str = Field(default_factory=new_trace_id, min_length=1)
