"""The account's LID map: ``<n>@lid`` -> the phone-number id of the same person.

WhatsApp Web shows more and more people (and the account itself, in groups) as ``@lid`` ids,
which are not phone numbers. The gateway learns pairs from WA-JS
(``WPP.conn.getMyUserLid``, ``WPP.contact.getPnLidEntry``, the contacts' ``lid`` and
``phoneNumber``) and canonicalises every id through this map before it produces a record,
so one person is one chat whichever id WhatsApp used.

The map is a changelog table, so a restarted or moved gateway starts with every pair learned
before. Table writes need stream context: the gateway produces each new pair to a small topic
(key: the lid, value: the phone id, both UTF-8) and an agent writes it here
(``pipeline/gateway/wiring.py``). :class:`LidMap` is what the gateway reads: the table plus the
pairs it learned and has not seen come back through the table yet.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["LidMap", "lid_map_table"]


def lid_map_table(app: Any, partitions: int) -> Any:
    """Key: ``<n>@lid``; value: ``<digits>@c.us``. Keyed like the pairs topic that feeds it."""
    return app.Table(
        "lid_map",
        default=None,
        partitions=partitions,
        key_type=str,
        value_type=str,
        help="<n>@lid -> <digits>@c.us of every LID the gateway has resolved.",
    )


class LidMap(Mapping[str, str]):
    """Read view for :func:`schemas.canonical_chat_id`: ``table`` (may be None) + recent pairs.

    ``learn`` returns True for a pair that is new or changed (the caller then produces it to
    the pairs topic); reads never need stream context.
    """

    def __init__(self, table: Any = None) -> None:
        self.table = table
        self._recent: dict[str, str] = {}

    def learn(self, lid: str, phone: str) -> bool:
        if self.get(lid) == phone:
            return False
        self._recent[lid] = phone
        return True

    def __getitem__(self, lid: str) -> str:
        found = self._recent.get(lid)
        if found is None and self.table is not None:
            found = self.table.get(lid)
        if not found:
            raise KeyError(lid)
        return str(found)

    def __contains__(self, lid: object) -> bool:
        if not isinstance(lid, str):
            return False
        try:
            self[lid]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        keys = dict.fromkeys(self._recent)
        if self.table is not None:
            keys.update(dict.fromkeys(str(k) for k in self.table.keys()))  # noqa: SIM118
        return iter(keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)
