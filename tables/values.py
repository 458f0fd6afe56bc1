"""Typed access to tables whose values are JSON dicts.

Faust stores table values through a serializer; keeping them as plain JSON dicts keeps
the changelog readable by any consumer, and these helpers give agents pydantic models.
A value is written back whole: Faust writes the changelog only on assignment, so an
in-place change of a nested dict would never reach it.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


class TypedTable(Generic[M]):
    """A Faust table of ``model`` values stored as JSON dicts."""

    def __init__(self, table: Any, model: type[M]) -> None:
        self.table = table
        self.model = model

    def get(self, key: str) -> M | None:
        raw = self.table.get(key)
        return None if raw is None else self.model.model_validate(raw)

    def get_or(self, key: str, default: M) -> M:
        found = self.get(key)
        return default if found is None else found

    def put(self, key: str, value: M) -> None:
        """Write ``value`` (only in stream context, as every Faust table write)."""
        self.table[key] = value.model_dump(mode="json")

    def delete(self, key: str) -> None:
        if key in self.table:
            del self.table[key]

    def keys(self) -> list[str]:
        return list(self.table.keys())
