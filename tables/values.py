"""Typed access to tables whose values are JSON dicts.

Faust stores table values through a serializer; keeping them as plain JSON dicts keeps
the changelog readable by any consumer, and these helpers give agents pydantic models.
A value is written back whole: Faust writes the changelog only on assignment, so an
in-place change of a nested dict would never reach it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


class TypedTable(Generic[M]):
    """A Faust table of ``model`` values stored as JSON dicts.

    ``cache``: how many parsed models to keep (0: none). A hit needs the table to hold the
    very dict object the model was parsed from (or written as), so a value changed by
    anyone, recovered from the changelog or read from RocksDB (a new object each time) is
    parsed again. Only for frozen models: a cached model is handed out again, so nobody may
    change it in place. The windows table uses it: respond and apply_reply each read a
    chat's 20-entry window once a turn, and parsing it was most of their table cost.
    """

    def __init__(self, table: Any, model: type[M], *, cache: int = 0) -> None:
        if cache and not model.model_config.get("frozen"):
            raise ValueError(f"a cached TypedTable needs a frozen model; {model.__name__} is not")
        self.table = table
        self.model = model
        self.cache_size = cache
        self._cache: OrderedDict[str, tuple[Any, M]] = OrderedDict()

    def get(self, key: str) -> M | None:
        raw = self.table.get(key)
        if raw is None:
            return None
        if self.cache_size:
            hit = self._cache.get(key)
            if hit is not None and hit[0] is raw:
                self._cache.move_to_end(key)
                return hit[1]
            value = self.model.model_validate(raw)
            self._remember(key, raw, value)
            return value
        return self.model.model_validate(raw)

    def _remember(self, key: str, raw: Any, value: M) -> None:
        self._cache[key] = (raw, value)
        self._cache.move_to_end(key)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def get_or(self, key: str, default: M) -> M:
        found = self.get(key)
        return default if found is None else found

    def put(self, key: str, value: M) -> None:
        """Write ``value`` (only in stream context, as every Faust table write)."""
        raw = value.model_dump(mode="json")
        self.table[key] = raw
        if self.cache_size:
            self._remember(key, raw, value)

    def delete(self, key: str) -> None:
        self._cache.pop(key, None)
        if key in self.table:
            del self.table[key]

    def keys(self) -> list[str]:
        return list(self.table.keys())
