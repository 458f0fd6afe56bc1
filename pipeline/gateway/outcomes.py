"""What a send's answer from the page means: sent, failed for good, or worth another try.

A send is ``sent`` only when WhatsApp took it. What WA-JS 4.6.0 hands back (sources in
wppconnect-team/wa-js):

* ``WPP.chat.sendTextMessage`` (src/chat/functions/sendRawMessage.ts) does not throw when
  WhatsApp refuses a send: with ``waitForAck`` it resolves with ``sendMsgResult`` whose
  ``messageSendResult`` is one of ``SendMsgResult`` (src/whatsapp/enums/SendMsgResult.ts):
  ``OK``, ``ERROR_NETWORK``, ``ERROR_EXPIRED``, ``ERROR_CANCELLED``, ``ERROR_UPLOAD``,
  ``ERROR_UNKNOWN``; ``ack`` is the message's ack when it resolved (-1 failed, 0 waiting
  on the phone's clock, 1 the server has it). Without a send result (a build that gives
  none) an ack of 1 or more is WhatsApp's word that it took the message.
* It throws ``WPPError``s with a ``code``: ``chat_not_found`` (src/assert/assertChat.ts,
  also from the look-alike for a group it does not know), ``invalid_wid``
  (src/assert/assertWid.ts), ``message_key_*`` for a bad ``messageId``,
  ``can_not_send_message_to_this_groupType`` (a community's parent group). WA-JS's own
  ``WPP.chat.find`` throws plain errors ("Failed to find or create chat for ...").
* It does not check that a number is on WhatsApp (``WPP.chat.find`` creates the chat), so
  ``bridge.js`` asks ``WPP.contact.queryWidExists`` first for a user it has no chat with
  (src/contact/functions/queryWidExists.ts: null for an id without an account, and also
  when the query itself failed, hence the page's ``isOnline`` is asked too).

Permanent failures (an unregistered number, a chat WhatsApp does not have, an id that is
no chat id, a send WhatsApp cancelled) are reported at once; passing ones (a network
refusal, an unknown error, an exception from a changed WhatsApp build, no answer in time)
are retried by the gateway. Which refusals pass is this project's judgement, not WA-JS's.

Pure functions (no browser, no clock): unit-tested on their own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "PERMANENT_RESULTS",
    "Verdict",
    "judge_send",
    "timed_out",
]

#: ``messageSendResult`` values after which the same send is not tried again.
PERMANENT_RESULTS: frozenset[str] = frozenset({"ERROR_CANCELLED"})

#: ``bridge.js``'s own code for a number ``WPP.contact.queryWidExists`` does not know.
UNREGISTERED = "not_a_registered_number"

#: WPPError codes, each with the cause it names in a reason; all of them permanent.
_PERMANENT_CODES: dict[str, str] = {
    UNREGISTERED: "unregistered",
    "chat_not_found": "chat not found",
    "invalid_wid": "invalid chat id",
    "can_not_send_message_to_this_groupType": "refused",
    "type_not_valid_for_newsletter": "refused",
    "message_key_is_not_from_me": "refused",
    "message_key_remote_id_is_not_same_of_chat": "refused",
}
#: WA-JS's plain errors for a chat it cannot find or make (src/chat/functions/find.ts).
_NO_CHAT = re.compile(r"chat not found|failed to find or create chat", re.IGNORECASE)

Kind = Literal["sent", "permanent", "transient"]


@dataclass(frozen=True)
class Verdict:
    """One attempt's end. ``reason`` (failures) starts with the cause: ``unregistered``,
    ``chat not found``, ``invalid chat id``, ``refused``, ``offline``, ``unconfirmed``,
    ``error`` or ``timeout``, then ``: `` and what WhatsApp Web said. ``wa_id`` (sent) is
    the serialized key WA-JS resolved with, if any."""

    kind: Kind
    reason: str | None = None
    wa_id: str | None = None

    @property
    def sent(self) -> bool:
        return self.kind == "sent"

    @property
    def permanent(self) -> bool:
        return self.kind == "permanent"


def judge_send(answer: Mapping[str, Any], chat: str) -> Verdict:
    """What ``bridge.js``'s ``send`` answer ``{id, ack, result, error}`` means for ``chat``.

    ``error`` is ``{code, message}`` when WA-JS (or the bridge's registration check) threw;
    ``result`` the ``messageSendResult``; ``ack`` an int or None.
    """
    error = answer.get("error")
    if isinstance(error, Mapping):
        return _judge_error(error, chat)
    result = answer.get("result")
    ack = answer.get("ack")
    wa_id = str(answer.get("id") or "") or None
    if result == "OK":
        return Verdict("sent", wa_id=wa_id)
    if result:
        kind: Kind = "permanent" if result in PERMANENT_RESULTS else "transient"
        return Verdict(kind, f"refused: WhatsApp answered {result} (ack {ack})")
    if isinstance(ack, int) and not isinstance(ack, bool) and ack >= 1:
        return Verdict("sent", wa_id=wa_id)  # no send result, but the server has it
    if isinstance(ack, int) and not isinstance(ack, bool) and ack < 0:
        return Verdict("transient", f"refused: WhatsApp marked the message failed (ack {ack})")
    return Verdict("transient", f"unconfirmed: WhatsApp Web returned no send result (ack {ack})")


def timed_out(seconds: float) -> Verdict:
    """The page did not answer one attempt within ``seconds``."""
    return Verdict("transient", f"timeout: WhatsApp Web did not answer the send in {seconds:g}s")


def _judge_error(error: Mapping[str, Any], chat: str) -> Verdict:
    code = str(error.get("code") or "")
    message = str(error.get("message") or "").splitlines()[0][:300] if error.get("message") else ""
    if code == UNREGISTERED:
        return Verdict(
            "permanent",
            f"unregistered: {chat} is not a registered WhatsApp number "
            "(WPP.contact.queryWidExists found no account)",
        )
    if code == "offline":
        return Verdict("transient", f"offline: {message or 'WhatsApp Web is offline'}")
    cause = _PERMANENT_CODES.get(code)
    if cause is None and _NO_CHAT.search(message):
        cause = "chat not found"
    if cause is not None:
        said = f"{code}: {message}" if code and message else code or message
        return Verdict("permanent", f"{cause}: WhatsApp Web has no way to send to {chat} ({said})")
    said = f"{code}: {message}" if code else message or "an error without a message"
    return Verdict("transient", f"error: WA-JS raised {said}")
