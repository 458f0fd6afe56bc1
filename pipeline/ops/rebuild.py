"""``faust -A pipeline rebuild-tables``: rebuild every table of the app from its changelog.

Every table of the app is backed by a compacted changelog topic, and the changelog is the
one truth: a worker whose local store is empty reads each changelog from offset 0 and ends
with the same tables. This command makes that happen on purpose, for an operator whose
table store is damaged, who moves a worker to a new machine, or who switches
``WABOT_STORE`` between ``memory://`` and ``rocksdb://``:

1. it refuses while the app's consumer group has members (a live worker), unless
   ``--force``; and it never deletes a RocksDB store that a process on this machine has
   open (RocksDB's ``LOCK`` file is held);
2. it reads every table's changelog from offset 0 to its end with a plain aiokafka
   consumer and applies it as a compacted changelog is read (the last value of a key wins,
   a null value deletes the key), and reports per table the records read, the live keys
   and a digest (:func:`state_digest`), which an operator can compare before and after;
3. it deletes the worker's local table store (Faust's ``App.conf.tabledir``, here
   ``<WABOT_DATA_DIR>/worker/v1/tables``), so the next worker start rebuilds every table
   from its changelog. It deletes nothing when a table's changelog topic is missing but
   its store has data: then the store may be the only copy.

``--digest-only`` does step 2 alone: a read-only audit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import re
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from yarl import URL

from pipeline.config.settings import Settings
from pipeline.kafka.consumers import stop_consumer

#: Exit code when the command refuses (a live worker, a store in use, a missing changelog).
EXIT_REFUSED = 1
#: Exit code when the broker cannot be reached or read.
EXIT_ERROR = 2


class RebuildError(Exception):
    """A one-line reason the command stopped; ``exit_code`` is what the process returns."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class ChangelogDigest:
    """What one table's changelog holds, read from offset 0 to its end.

    ``records`` counts every record read (tombstones included); ``keys`` the live keys
    after applying them; ``digest`` is :func:`state_digest` of that state;
    ``by_partition`` maps each partition to (live keys, digest of that partition alone).
    ``partitions`` is 0 and ``exists`` False when the topic is not on the broker.
    """

    table: str
    topic: str
    exists: bool
    partitions: int = 0
    records: int = 0
    tombstones: int = 0
    keys: int = 0
    digest: str = ""
    by_partition: dict[int, tuple[int, str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The digest as a JSON-ready dict (partition numbers become strings)."""
        return {
            "table": self.table,
            "topic": self.topic,
            "exists": self.exists,
            "partitions": self.partitions,
            "records": self.records,
            "tombstones": self.tombstones,
            "keys": self.keys,
            "digest": self.digest,
            "by_partition": {
                str(p): {"keys": keys, "digest": digest}
                for p, (keys, digest) in sorted(self.by_partition.items())
            },
        }


def _value_hash(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def _hashed_digest(state: Mapping[int, Mapping[bytes, bytes]]) -> str:
    """sha256 over (partition, key, sha256(value)) in sorted order; values already hashed."""
    total = hashlib.sha256()
    for partition in sorted(state):
        for key in sorted(state[partition]):
            total.update(partition.to_bytes(4, "big"))
            total.update(len(key).to_bytes(4, "big"))
            total.update(key)
            total.update(state[partition][key])
    return total.hexdigest()


def state_digest(state: Mapping[int, Mapping[bytes, bytes]]) -> str:
    """The digest of a table's state: ``{partition: {key bytes: value bytes}}``.

    sha256 (hex, 64 characters) over every (partition, key, value) sorted by partition and
    key, each written as the partition (4 bytes, big-endian), the key's length (4 bytes),
    the key and the sha256 of the value. Keys and values are the raw bytes Faust writes to
    the changelog, which are also the bytes its RocksDB store keeps; so a store read from
    disk (without Faust's ``__faust\\0offset__`` key) has the digest of its changelog.
    An empty state's digest is that of no bytes (``e3b0c442...``).
    """
    return _hashed_digest(
        {p: {k: _value_hash(v) for k, v in keys.items()} for p, keys in state.items()}
    )


def _check_reachable(error: Exception, servers: Sequence[str]) -> RebuildError:
    reason = str(error) or type(error).__name__
    return RebuildError(f"cannot reach the broker at {', '.join(servers)}: {reason}")


async def live_members(servers: Sequence[str], group_id: str, timeout: float) -> list[str]:
    """Members of consumer group ``group_id`` as ``client_id@host`` strings ([] if none).

    Asks the group's coordinator with aiokafka's ``AIOKafkaAdminClient.describe_consumer_groups``
    (a DescribeGroups request); a Faust worker is a member of the group named by the app id
    (``App.conf.id``) while it runs, and a killed worker stays one for the session timeout.
    Raises :class:`RebuildError` when the broker does not answer within ``timeout`` seconds.
    """
    responses = await _admin(
        servers, timeout, lambda admin: admin.describe_consumer_groups([group_id])
    )
    members: list[str] = []
    for response in responses:
        for group in response.to_object()["groups"]:
            if group["group"] != group_id:
                continue
            members.extend(f"{m['client_id']}@{m['client_host']}" for m in group["members"])
    return members


async def topic_partitions(servers: Sequence[str], timeout: float) -> dict[str, int]:
    """Every topic on the broker and its number of partitions.

    Asks for the metadata of all topics (``AIOKafkaAdminClient.describe_topics()`` with no
    names): naming topics in a metadata request would let a broker with
    ``auto.create.topics.enable`` create a missing changelog, uncompacted. Raises
    :class:`RebuildError` when the broker does not answer within ``timeout`` seconds.
    """
    described = await _admin(servers, timeout, lambda admin: admin.describe_topics())
    return {str(t["topic"]): len(t["partitions"]) for t in described if t["error_code"] == 0}


async def _admin(
    servers: Sequence[str], timeout: float, request: Callable[[Any], Awaitable[Any]]
) -> Any:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=list(servers), request_timeout_ms=int(timeout * 1000)
    )
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            return await request(admin)
    except Exception as exc:
        raise _check_reachable(exc, servers) from None
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def read_changelogs(
    servers: Sequence[str], tables: Sequence[tuple[str, str]], timeout: float
) -> list[ChangelogDigest]:
    """Read the changelog of every ``(table name, changelog topic)`` from offset 0 to its end.

    The end is each partition's high watermark when reading starts, so records written
    meanwhile are not waited for. Records are applied as a compacted topic is read: the last
    value of a key wins, a null value deletes the key, a null key is skipped. Only a hash of
    each value is kept, so memory grows with the number of keys, not with their values.
    Returns one :class:`ChangelogDigest` per table, in the order given. Raises
    :class:`RebuildError` when the broker does not answer within ``timeout`` seconds, or
    when ``timeout`` seconds pass without a record while a partition is behind its end.
    """
    digests = [ChangelogDigest(name, topic, exists=False) for name, topic in tables]
    existing = await topic_partitions(servers, timeout)
    by_topic: dict[str, ChangelogDigest] = {}
    assigned: list[TopicPartition] = []
    for digest in digests:
        if not existing.get(digest.topic):
            continue
        digest.exists = True
        digest.partitions = existing[digest.topic]
        by_topic[digest.topic] = digest
        assigned.extend(TopicPartition(digest.topic, p) for p in range(digest.partitions))
    state: dict[str, dict[int, dict[bytes, bytes]]] = {
        t: {tp.partition: {} for tp in assigned if tp.topic == t} for t in by_topic
    }
    consumer = AIOKafkaConsumer(
        bootstrap_servers=list(servers),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=int(timeout * 1000) + 1000,
    )
    try:
        async with asyncio.timeout(timeout):
            await consumer.start()
        if assigned:
            consumer.assign(assigned)
            async with asyncio.timeout(timeout):
                await consumer.seek_to_beginning(*assigned)
                ends = await consumer.end_offsets(assigned)
            await _read_to_end(consumer, ends, by_topic, state, timeout)
    except RebuildError:
        raise
    except Exception as exc:
        raise _check_reachable(exc, servers) from None
    finally:
        await stop_consumer(consumer)
    for topic, digest in by_topic.items():
        partitions = state[topic]
        digest.keys = sum(len(keys) for keys in partitions.values())
        digest.digest = _hashed_digest(partitions)
        digest.by_partition = {
            p: (len(keys), _hashed_digest({p: keys})) for p, keys in partitions.items()
        }
    for digest in digests:
        if not digest.exists:
            digest.digest = _hashed_digest({})
    return digests


async def _read_to_end(
    consumer: Any,
    ends: Mapping[Any, int],
    by_topic: Mapping[str, ChangelogDigest],
    state: dict[str, dict[int, dict[bytes, bytes]]],
    timeout: float,
) -> None:
    behind = {tp for tp, end in ends.items() if end > 0}
    for tp in set(ends) - behind:
        consumer.pause(tp)
    last_progress = time.monotonic()
    while behind:
        batch = await consumer.getmany(*behind, timeout_ms=500, max_records=10_000)
        for tp, records in batch.items():
            digest = by_topic[tp.topic]
            keys = state[tp.topic][tp.partition]
            for record in records:
                digest.records += 1
                if record.key is None:
                    continue
                if record.value is None:
                    digest.tombstones += 1
                    keys.pop(record.key, None)
                else:
                    keys[record.key] = _value_hash(record.value)
        if batch:
            last_progress = time.monotonic()
        for tp in list(behind):
            # Compaction leaves gaps; the position passes them, so compare positions.
            if await consumer.position(tp) >= ends[tp]:
                behind.discard(tp)
                consumer.pause(tp)
        if behind and time.monotonic() - last_progress > timeout:
            late = ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in behind))
            raise RebuildError(f"no records for {timeout:g}s while reading {late} to its end")


def store_paths(tabledir: Path, table_names: Sequence[str]) -> list[Path]:
    """The RocksDB folders Faust keeps for these tables under ``tabledir``.

    Faust's RocksDB store (``faust.stores.rocksdb.Store.partition_path``) keeps partition
    ``n`` of table ``name`` in ``<tabledir>/<name>-<n>.db`` and its backups in
    ``<tabledir>/<name>-backups``. Anything else under ``tabledir`` is left alone.
    Returns the paths that exist, sorted.
    """
    if not tabledir.is_dir():
        return []
    patterns = [re.compile(rf"{re.escape(name)}-(\d+\.db|backups)") for name in table_names]
    return sorted(
        entry
        for entry in tabledir.iterdir()
        if any(pattern.fullmatch(entry.name) for pattern in patterns)
    )


def locked_stores(paths: Sequence[Path]) -> list[Path]:
    """The RocksDB folders among ``paths`` whose ``LOCK`` file another process holds.

    RocksDB takes a POSIX write lock (``fcntl(F_SETLK)``) on ``<db>/LOCK`` for as long as
    the database is open read-write, so a held lock means a running worker on this machine
    has the store open. The lock is tried without waiting and released at once.
    """
    held = []
    for path in paths:
        lock = path / "LOCK"
        if not lock.is_file():
            continue
        with open(lock, "rb+") as handle:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EAGAIN):
                    held.append(path)
                    continue
                raise
            fcntl.lockf(handle, fcntl.LOCK_UN)
    return held


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _table_of(path: Path, table_names: Sequence[str]) -> str | None:
    for name in sorted(table_names, key=len, reverse=True):
        if re.fullmatch(rf"{re.escape(name)}-(\d+\.db|backups)", path.name):
            return name
    return None


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


def _refuse_if_open(paths: Sequence[Path]) -> None:
    held = locked_stores(paths)
    if held:
        raise RebuildError(
            f"the table store {held[0]} is open by a running process on this machine "
            "(its RocksDB LOCK is held): stop the worker here first (--force does not "
            "override this)",
            EXIT_REFUSED,
        )


async def rebuild(
    app: Any, settings: Settings, *, force: bool, digest_only: bool, timeout: float
) -> dict[str, Any]:
    """Check, audit and (unless ``digest_only``) delete the local table store of ``app``.

    ``app`` is a Faust app whose tables are declared (``app.tables``: name -> table; each
    table's ``changelog_topic.get_topic_name()``); its consumer group is ``app.conf.id`` and
    its local store lives under ``app.conf.tabledir``. Returns the report printed by the
    command (see ``--json``). Raises :class:`RebuildError` with exit code
    :data:`EXIT_REFUSED` for a live worker (without ``force``), a store open on this
    machine or a missing changelog whose table has a local store, and :data:`EXIT_ERROR`
    when the broker cannot be reached or read.
    """
    servers = settings.bootstrap_servers
    tables = [
        (str(name), str(table.changelog_topic.get_topic_name()))
        for name, table in sorted(app.tables.items())
    ]
    names = [name for name, _ in tables]
    tabledir = Path(app.conf.tabledir)
    paths = store_paths(tabledir, names)
    group = str(app.conf.id)
    members = await live_members(servers, group, timeout)
    if members and not digest_only and not force:
        raise RebuildError(
            f"a worker of app {group!r} is live ({len(members)} member(s) in its consumer "
            f"group: {', '.join(members)}); stop every worker first, or pass --force to "
            "rebuild this machine's store anyway (a killed worker stays a member for "
            f"WABOT_BROKER_SESSION_TIMEOUT={settings.broker_session_timeout:g}s)",
            EXIT_REFUSED,
        )
    if not digest_only:
        _refuse_if_open(paths)
    digests = await read_changelogs(servers, tables, timeout)
    deleted: list[Path] = []
    deleted_bytes = 0
    if not digest_only:
        missing = {d.table for d in digests if not d.exists}
        at_risk = [p for p in paths if _table_of(p, names) in missing and p.suffix == ".db"]
        if at_risk:
            raise RebuildError(
                f"the changelog of table {_table_of(at_risk[0], names)!r} is not on the "
                f"broker at {', '.join(servers)} but its store {at_risk[0]} exists: it may "
                "be the only copy, so nothing was deleted (wrong WABOT_BROKER_URL or "
                "WABOT_APP_ID?)",
                EXIT_REFUSED,
            )
        _refuse_if_open(paths)  # again: a worker may have started while we read
        for path in paths:
            deleted_bytes += _size(path)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            deleted.append(path)
    return {
        "app_id": group,
        "live_members": members,
        "store": settings.store,
        "tabledir": str(tabledir),
        "digest_only": digest_only,
        "deleted": [str(p) for p in deleted],
        "deleted_bytes": deleted_bytes,
        "tables": [d.as_json() for d in digests],
    }


def render(report: Mapping[str, Any]) -> list[str]:
    """The report of :func:`rebuild` as the lines the command prints without ``--json``."""
    lines = []
    if report["live_members"]:
        lines.append(
            f"note: {len(report['live_members'])} worker(s) of app {report['app_id']!r} are "
            "live: their changelogs may still change"
        )
    lines.append(f"{'table':<16} {'records':>9} {'keys':>8}  digest (sha256)")
    for t in report["tables"]:
        if t["exists"]:
            lines.append(f"{t['table']:<16} {t['records']:>9} {t['keys']:>8}  {t['digest']}")
        else:
            lines.append(f"{t['table']:<16} {'-':>9} {'-':>8}  (no changelog topic {t['topic']})")
    scheme = URL(report["store"]).scheme
    if report["digest_only"]:
        lines.append("--digest-only: nothing deleted")
    elif report["deleted"]:
        leftover = " (left by an earlier rocksdb:// run)" if scheme != "rocksdb" else ""
        lines.append(
            f"deleted the local table store{leftover}: {len(report['deleted'])} folders, "
            f"{_human(report['deleted_bytes'])} under {report['tabledir']}; the next worker "
            "start rebuilds every table from its changelog"
        )
    elif scheme == "rocksdb":
        lines.append(
            f"no table store under {report['tabledir']}: the next worker start rebuilds "
            "every table from its changelog"
        )
    else:
        lines.append(
            f"store {report['store']}: tables live in the worker's memory and are rebuilt "
            "from their changelogs at every start; nothing on disk to delete"
        )
    return lines
