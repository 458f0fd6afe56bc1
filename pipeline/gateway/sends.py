"""Which WhatsApp messages are the bot's own: by the id asked for, the id returned, or the echo.

The gateway asks WA-JS to send under an id derived from the outbound record
(``sendTextMessage(..., {messageId})``), but a WhatsApp Web may assign its own id instead:
WA-JS then resolves with that id, and the echo of the send (``chat.new_message`` with
``fromMe``) can arrive before the call returns. A send is therefore recognised

* by the requested id (registered before the call),
* by the id the call returned (registered when it returns), and
* while it is in flight, by an echo from us in the same chat with the same text: the first
  such echo claims the send, so the owner typing the same words later is still the owner.

Pure bookkeeping (no browser, no Kafka, no clock): unit-tested on its own.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["InFlight", "OwnSends", "SentRef"]


@dataclass
class SentRef:
    """What one WhatsApp message of ours was: its outbound record, chat, account, trace."""

    outbound_id: str
    chat_id: str
    account_id: str
    trace_id: str
    ack: int = 0


@dataclass(eq=False)
class InFlight:
    """One send between the call to WA-JS and its return."""

    chat_id: str
    text: str
    ref: SentRef
    requested_id: str
    echo_id: str | None = None
    """The id of the echo that claimed this send (WhatsApp's own id, maybe)."""


def _same_text(a: str, b: str) -> bool:
    # WhatsApp Web trims what it sends; nothing else is normalised (a reformatted text is
    # recognised by the returned id instead).
    return a.strip() == b.strip()


class OwnSends:
    """The bot's sends of this run, newest ``remember`` ids kept."""

    def __init__(self, remember: int = 10_000) -> None:
        self._known: OrderedDict[str, SentRef] = OrderedDict()
        self._flights: list[InFlight] = []
        self._remember = remember

    def get(self, wa_id: str) -> SentRef | None:
        """What we sent as ``wa_id`` (an inner message id), if it is one of ours."""
        return self._known.get(wa_id)

    def keep(self, wa_id: str, ref: SentRef) -> None:
        """Remember ``wa_id`` as ``ref`` (also for sends of earlier runs, found in a table)."""
        self._known[wa_id] = ref
        self._known.move_to_end(wa_id)
        while len(self._known) > self._remember:
            self._known.popitem(last=False)

    def begin(self, chat_id: str, text: str, ref: SentRef, requested_id: str) -> InFlight:
        """A send starts: its requested id is ours from now on, and so is its echo."""
        flight = InFlight(chat_id, text, ref, requested_id)
        self.keep(requested_id, ref)
        self._flights.append(flight)
        return flight

    def finish(self, flight: InFlight, returned_id: str | None) -> str:
        """The send returned ``returned_id`` (inner id, None if WA-JS gave none); returns the
        id the message has in the chat: the returned one, else the echo's, else the requested."""
        self._end(flight)
        if returned_id:
            self.keep(returned_id, flight.ref)
            return returned_id
        return flight.echo_id or flight.requested_id

    def abort(self, flight: InFlight) -> None:
        """The send raised: its echo, if one still comes, is recognised by id only."""
        self._end(flight)

    def echo(self, chat_id: str, body: str, wa_id: str) -> SentRef | None:
        """A message from us arrived (``fromMe``): ours if its id is known, or if it is the
        first echo of a send in flight to ``chat_id`` with this text (which it then claims)."""
        known = self._known.get(wa_id)
        if known is not None:
            return known
        for flight in self._flights:
            if (
                flight.echo_id is None
                and flight.chat_id == chat_id
                and _same_text(flight.text, body)
            ):
                flight.echo_id = wa_id
                self.keep(wa_id, flight.ref)
                return flight.ref
        return None

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    def _end(self, flight: InFlight) -> None:
        if flight in self._flights:
            self._flights.remove(flight)
