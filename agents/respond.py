"""respond: chat.turns -> llm.results, many chats at once, each chat strictly in order.

A plain Faust agent handles one record at a time: with a 1 s LLM call that is one reply
a second for everyone. Here the stream loop only *dispatches*: each turn joins its
chat's queue, one task per chat works through that queue in order, and a semaphore
caps the LLM calls in flight across chats (``respond_max_in_flight``).

The stream loop must never block: Faust feeds every topic through one delivery loop,
so a blocked agent fills its buffer and stops llm.results from reaching apply_reply,
which the waiting turns need to finish (a deadlock, seen with 20,000 queued turns when
this loop waited for room). So every fetched turn is queued in memory, and the memory is
bounded at the consumer instead: once ``respond_max_queued`` turns are held, fetching of
chat.turns stops until half of them are done (:class:`agents.intake.Intake`, Faust's own
per-partition backpressure), while llm.results keeps flowing to apply_reply.

Order within a chat: turn n+1 is sent to the LLM only after the reply to turn n is in
the chat's window (``windows.last_applied_seq >= n``), so its prompt contains that
reply. The window is written by the apply_reply agent; the in-process ProgressBoard
wakes the waiting chat task when it does.

Tables change only in stream context, and this agent's chat tasks run outside it. So
they never write a table: the LLM's answer goes to the ``llm.results`` topic (keyed by
chat, co-partitioned), and apply_reply, consuming it in stream context, updates the
window and token tables and emits the outbound messages. The reply is therefore on
Kafka before anything depends on it, and replaying ``llm.results`` rebuilds the state.

Rebalances: Faust does not wait for this agent's chat tasks when partitions are revoked
(``stream_wait_empty=False``), and a task that went on would answer from a window the
new owner no longer updates: its reply could miss the previous exchange (a test caught
it). So the start of a rebalance (:meth:`ChatScheduler.revoke_all`, called from the
consumer's revoke callback, before anything is flushed or committed) abandons every turn
held here, queued, waiting or in an LLM call: no result is produced and no ack given, and
the partitions' next owner (maybe this worker again) replays them from the committed
offset. Faust's eager rebalancing revokes every partition anyway.

Offsets: the stream runs with manual acks. A turn is acked only when its LLMResult has
been acknowledged by the broker, and Faust commits only up to the lowest offset not yet
acked, so a crash replays every unfinished turn and skips none. A replayed turn gets
the same outbound ids (derived from the turn id); apply_reply recognises a turn it has
already applied, and the gateway's sink recognises an outbound id it has already sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import regex
from pydantic import ValidationError

from agents.context import traced
from agents.dead_letters import dead_letter
from agents.intake import Intake, Outstanding
from agents.progress import ProgressBoard
from schemas import ChatState, LLMCall, LLMResult, Turn
from schemas.fields import is_blank
from tables import ConversationWindow, TypedTable

log = logging.getLogger(__name__)


class CompletionLike(Protocol):
    text: str
    status: Any
    calls: list[LLMCall]

    @property
    def total_tokens(self) -> int: ...


class Completer(Protocol):
    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        turn_id: str,
        chat_id: str,
        trace_id: str,
        model: str | None = None,
        cut_before: int = 0,
    ) -> CompletionLike: ...


@dataclass(frozen=True)
class RespondConfig:
    """Built from the settings by :func:`pipeline.config.stages.respond_config` (no defaults)."""

    system_prompt: str
    max_in_flight: int
    max_reply_chars: int
    context_idle_expiry_s: float
    previous_turn_timeout_s: float


_CLUSTER = regex.compile(r"\X")
_SENTENCE_END = frozenset(".!?")
_NEWLINES = frozenset({"\n", "\r\n", "\r"})


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: what WhatsApp Web (JavaScript's ``String.length``) counts.

    At least the number of code points (an emoji outside the BMP counts 2), so a part within
    the limit in UTF-16 units is within it however the limit is counted.
    """
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def split_reply(text: str, max_chars: int) -> list[str]:
    """Split a reply into WhatsApp messages of at most ``max_chars`` UTF-16 code units.

    Cuts only between extended grapheme clusters (Unicode UAX #29, as ``regex``'s ``\\X``
    finds them), so never inside a ZWJ emoji sequence, a flag, a skin-tone modifier, a
    combining mark or a Hangul syllable. Among those boundaries it prefers a paragraph break,
    else a line break, else a sentence end, else a space, as long as the part keeps more than a
    third of a message; only a word longer than that is cut where the limit falls. A single
    cluster longer than ``max_chars`` (pathological: a letter with dozens of combining marks)
    is cut between code points, never inside a surrogate pair.

    The whitespace clusters at each cut, and at both ends, are dropped; nothing else is. So
    the parts, joined with the whitespace removed at each cut, are exactly the text without
    its leading and trailing whitespace (a space carrying a combining mark is not whitespace).
    Returns ``[]`` for a text of whitespace only. Raises ``ValueError`` when ``max_chars < 2``
    (an astral code point needs 2).
    """
    if max_chars < 2:
        raise ValueError("max_chars must be at least 2 (one astral code point)")
    clusters: list[str] = _CLUSTER.findall(text)
    start, stop = 0, len(clusters)
    while start < stop and clusters[start].isspace():
        start += 1
    while stop > start and clusters[stop - 1].isspace():
        stop -= 1
    if utf16_len(text) <= max_chars:  # the common case, without building sizes
        return ["".join(clusters[start:stop])] if start < stop else []
    # Most clusters are one BMP code point: size 1 without a scan.
    sizes = [1 if len(c) == 1 and c <= "\uffff" else utf16_len(c) for c in clusters]
    parts: list[str] = []
    while start < stop:
        # The most clusters from ``start`` that fit, and their size.
        end, size = start, 0
        while end < stop and size + sizes[end] <= max_chars:
            size += sizes[end]
            end += 1
        if end == stop:
            parts.append("".join(clusters[start:stop]))
            break
        if end == start:  # one cluster longer than a message: cut it between code points
            head, rest = _cut_cluster(clusters[start], max_chars)
            parts.append(head)
            clusters[start], sizes[start] = rest, utf16_len(rest)
            continue
        cut = _best_cut(clusters, sizes, start, end, max_chars)
        last = cut
        while last > start and clusters[last - 1].isspace():
            last -= 1
        parts.append("".join(clusters[start:last]))
        start = cut
        while start < stop and clusters[start].isspace():
            start += 1
    return parts


def _best_cut(clusters: list[str], sizes: list[int], start: int, end: int, max_chars: int) -> int:
    """Index of the cluster the next part stops before: the best-ranked boundary in
    ``(start, end]`` (the latest of that rank) whose part keeps more than a third of
    ``max_chars``, else ``end``. ``clusters[end]`` exists: the caller handles the last part.

    Ranks: 0 before a paragraph break, 1 before a line break, 2 after a sentence end (before
    the space), 3 before a space. Scans from the end and stops at the first paragraph break.
    """
    best_rank, best = 4, end
    size = sum(sizes[start:end])  # the size of clusters[start:boundary]
    for boundary in range(end, start, -1):
        if size <= max_chars // 3:
            break
        after = clusters[boundary]
        if after.isspace():
            if after in _NEWLINES:
                following = clusters[boundary + 1] if boundary + 1 < len(clusters) else ""
                rank = 0 if following in _NEWLINES else 1
            else:
                rank = 2 if clusters[boundary - 1] in _SENTENCE_END else 3
            if rank < best_rank:
                best_rank, best = rank, boundary
                if rank == 0:
                    break
        size -= sizes[boundary - 1]
    return best


def _cut_cluster(cluster: str, max_chars: int) -> tuple[str, str]:
    """The longest head of ``cluster`` within ``max_chars`` UTF-16 units, and the rest."""
    size = 0
    for index, ch in enumerate(cluster):
        size += 2 if ord(ch) > 0xFFFF else 1
        if size > max_chars:
            return cluster[:index], cluster[index:]
    return cluster, ""


class _Abandoned(Exception):
    """The turn's partition was revoked while it was being answered."""


@dataclass(frozen=True)
class _Queued:
    turn: Turn
    done: Callable[[], Awaitable[Any]]
    epoch: int


class ChatScheduler:
    """Per-chat ordered queues, a global cap on LLM calls in flight, and backpressure."""

    def __init__(
        self,
        config: RespondConfig,
        windows: TypedTable[ConversationWindow],
        chats: TypedTable[ChatState],
        llm: Completer,
        results: Any,
        progress: ProgressBoard,
        intake: Intake | None = None,
        outstanding: Outstanding | None = None,
    ) -> None:
        """``intake`` (optional) stops fetching chat.turns while too many turns are held;
        ``outstanding`` (optional) is told each turn this worker is done with, so the guard
        stops reading wa.inbound while too many of its turns wait (agents/intake.py)."""
        self.config = config
        self.intake = intake
        self.outstanding = outstanding
        self.windows = windows
        self.chats = chats
        self.llm = llm
        self.results = results
        self.progress = progress
        self._queues: dict[str, deque[_Queued]] = {}
        self._epoch = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._in_flight = asyncio.Semaphore(config.max_in_flight)
        self.queued = 0

    async def submit(self, turn: Turn, done: Callable[[], Awaitable[Any]]) -> None:
        """Queue ``turn`` behind its chat's earlier turns; never blocks (see module doc)."""
        self.queued += 1
        if self.intake is not None:
            self.intake.update(self.queued)
        queued = _Queued(turn, done, self._epoch)
        self._queues.setdefault(turn.chat_id, deque()).append(queued)
        if turn.chat_id not in self._tasks:
            self._tasks[turn.chat_id] = asyncio.create_task(self._run_chat(turn.chat_id))

    def revoke_all(self) -> None:
        """A rebalance starts: every turn held here is replayed by its partition's next
        owner from the committed offset, so none of them may produce a result now."""
        self._epoch += 1
        if self.intake is not None:
            self.intake.reset()
        if self.outstanding is not None:
            self.outstanding.reset()
        self.progress.wake_all()

    def turn_finished(self) -> None:
        """One turn is done with: answered, abandoned, given up or dead-lettered."""
        if self.outstanding is not None:
            self.outstanding.finished()

    def _owned(self, queued: _Queued) -> bool:
        return self._epoch == queued.epoch

    async def _run_chat(self, chat: str) -> None:
        queue = self._queues[chat]
        try:
            while queue:
                queued = queue.popleft()
                if self._owned(queued):
                    finished = await self._answer_with_retries(queued)
                    if finished:
                        await queued.done()
                self.queued -= 1
                if self.intake is not None:
                    self.intake.update(self.queued)
                self.turn_finished()
        finally:
            del self._tasks[chat]
            if not queue:
                self._queues.pop(chat, None)

    async def _answer_with_retries(self, queued: _Queued) -> bool:
        turn = queued.turn
        with traced(turn.trace_id):
            for attempt in range(1, 4):
                try:
                    await self._answer(turn, lambda: self._owned(queued))
                    return True
                except _Abandoned:
                    log.info("turn %s abandoned for the rebalance; replayed after", turn.turn_id)
                    return False
                except Exception:
                    log.exception("turn %s failed (attempt %d)", turn.turn_id, attempt)
                    await asyncio.sleep(attempt)
            # Left unacked: the offset is not committed past it and a restart retries it.
            log.error("turn %s left unfinished; it is retried after a restart", turn.turn_id)
            return False

    async def _answer(self, turn: Turn, owned: Callable[[], bool]) -> None:
        chat = turn.chat_id
        deadline = time.monotonic() + self.config.previous_turn_timeout_s
        while True:
            if not owned():
                raise _Abandoned
            window = self.windows.get(chat) or ConversationWindow()
            if window.is_applied(turn.turn_id):
                return  # replay of a turn whose reply is already in the window
            if turn.seq == 0 or window.last_applied_seq >= turn.seq - 1:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning(
                    "turn %s seq=%d: previous reply not applied after %.0fs; answering anyway",
                    turn.turn_id,
                    turn.seq,
                    self.config.previous_turn_timeout_s,
                )
                break
            await self.progress.wait_change(chat, remaining)
        messages = self.prompt(turn, window)
        account = self.chats.get(f"account|{turn.account_id}")
        async with self._in_flight:
            completion = await self.llm.complete(
                messages,
                turn_id=turn.turn_id,
                chat_id=chat,
                trace_id=turn.trace_id,
                model=account.model if account is not None else None,
                cut_before=turn.cut_chars,
            )
        result = LLMResult(
            turn=turn,
            reply=completion.text,
            # A part of invisible characters only is no message (the sink refuses it).
            parts=[
                p
                for p in split_reply(completion.text, self.config.max_reply_chars)
                if not is_blank(p)
            ],
            status=completion.status,
            calls=completion.calls,
            total_tokens=completion.total_tokens,
            trace_id=turn.trace_id,
        )
        if not owned():  # answered from a window this worker no longer owns
            raise _Abandoned
        delivered = await self.results.send(key=chat.encode(), value=result)
        await delivered  # the broker has it: only now may the turn's offset be committed

    def prompt(self, turn: Turn, window: ConversationWindow) -> list[dict[str, str]]:
        # A chat's persona, else its account's system prompt (set through the operator API,
        # kept under "account|<id>" by the guard), else the configured one.
        state = self.chats.get(turn.chat_id)
        account = self.chats.get(f"account|{turn.account_id}")
        system = next(
            (s.persona for s in (state, account) if s is not None and s.persona),
            self.config.system_prompt,
        )
        messages = [{"role": "system", "content": system}]
        # Event time: idle is the gap between the chat's messages, whenever they are
        # processed (a replay runs faster than the conversation did).
        now = turn.last_received_at.timestamp()
        for entry in window.context(now, self.config.context_idle_expiry_s):
            messages.append({"role": entry.role, "content": entry.content})
        messages.append({"role": "user", "content": turn.text})
        return messages


def register(
    app: Any,
    *,
    source: Any,
    dlq: Any,
    scheduler: ChatScheduler,
) -> Any:
    """Attach the respond agent to ``app``; return the agent."""

    @app.agent(source, name="respond")
    async def respond(stream: Any) -> None:
        async for event in stream.noack().events():
            try:
                turn = Turn.model_validate_json(event.value)
            except (ValidationError, ValueError) as exc:
                await dead_letter(dlq, event, "respond", f"invalid turn: {exc}", exc)
                await stream.ack(event)
                scheduler.turn_finished()
                continue

            async def done(event: Any = event) -> None:
                await stream.ack(event)

            await scheduler.submit(turn, done)

    return respond
