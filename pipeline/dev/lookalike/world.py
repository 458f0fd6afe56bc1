"""The look-alike's world: one WhatsApp account, its chats, their messages and acks.

Everything here is plain synchronous state with no I/O, so the server can mutate it from its event
loop and a test can reason about it from the JSON snapshot alone. Who may see a change (the bot's
page, the phone view) is the server's business, not the world's.

Ids follow WhatsApp Web: people are ``<digits>@c.us`` (or ``<n>@lid``), groups ``<id>@g.us``; a
message has an inner id (``3EB0...`` when sent from a web page, ``3A...`` from a phone) and a
serialized key ``<fromMe>_<chat>_<id>[_<participant>]`` where the participant is the group member
who wrote it.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "ACK_DEVICE",
    "ACK_ERROR",
    "ACK_PENDING",
    "ACK_READ",
    "ACK_SERVER",
    "MEDIA_TYPES",
    "MESSAGE_TYPES",
    "Chat",
    "Message",
    "Origin",
    "World",
    "WorldError",
    "is_group",
    "valid_chat_id",
    "valid_user_id",
]

ACK_ERROR = -1
ACK_PENDING = 0
ACK_SERVER = 1
"""One grey tick: the server has the message."""
ACK_DEVICE = 2
"""Two grey ticks: the recipient's phone has it."""
ACK_READ = 3
"""Two blue ticks."""

Origin = Literal["customer", "owner", "bot"]
"""Who typed a message: someone else, the account owner on the phone, or the bot's web page."""

MEDIA_TYPES: dict[str, str] = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/mpeg",
    "ptt": "audio/ogg; codecs=opus",
    "document": "application/pdf",
    "sticker": "image/webp",
}
"""Message types that carry media, with the mimetype used when a control request names none."""

MESSAGE_TYPES: frozenset[str] = frozenset({"chat", "location", "vcard", "ciphertext", *MEDIA_TYPES})
"""What ``POST /control/message`` accepts as ``type``."""

_USER_RE = re.compile(r"^\d{3,20}@(c\.us|lid)$")
_GROUP_RE = re.compile(r"^\d{5,30}(-\d{5,15})?@g\.us$")
_MESSAGE_ID_RE = re.compile(r"^[A-Za-z0-9]{8,64}$")
_LID_RE = re.compile(r"^\d{3,20}@lid$")


class WorldError(ValueError):
    """A request the world cannot honour (unknown chat, malformed id...): the caller's mistake."""


def valid_user_id(value: str) -> bool:
    """``<digits>@c.us`` or ``<n>@lid``."""
    return bool(_USER_RE.match(value))


def valid_chat_id(value: str) -> bool:
    """A person or a group."""
    return valid_user_id(value) or bool(_GROUP_RE.match(value))


def is_group(chat_id: str) -> bool:
    return chat_id.endswith("@g.us")


def new_message_id(origin: Origin) -> str:
    """A fresh inner id shaped like the real ones: web clients use ``3EB0``, iPhones ``3A``."""
    if origin == "bot":
        return "3EB0" + secrets.token_hex(9).upper()
    return "3A" + secrets.token_hex(9).upper()


@dataclass
class Chat:
    id: str
    name: str
    participants: list[str] = field(default_factory=list)
    """Group members other than the bot account (empty for a 1:1 chat)."""
    unread_count: int = 0
    t: int = 0
    """When the last message arrived, in seconds; orders the chat list."""
    typing: bool = False
    """The bot's page is showing "typing..." in this chat."""

    @property
    def is_group(self) -> bool:
        return is_group(self.id)

    def to_json(self, world: World) -> dict[str, Any]:
        last = world.last_message(self.id)
        return {
            "id": self.id,
            "name": self.name,
            "contact_name": None if self.is_group else world.given_name(self.id),
            "is_group": self.is_group,
            "participants": [{"id": p, "name": world.contact_name(p)} for p in self.participants],
            "unread_count": self.unread_count,
            "t": self.t,
            "typing": self.typing,
            "last_message": last.to_json(world) if last is not None else None,
        }


@dataclass
class Message:
    id: str
    chat: str
    origin: Origin
    sender: str
    """The account that wrote it: a customer or group member, or the bot account itself."""
    body: str
    t: int
    seq: int
    type: str = "chat"
    ack: int = ACK_SERVER
    mentions: list[str] = field(default_factory=list)
    quoted_id: str | None = None
    caption: str | None = None
    mimetype: str | None = None
    filename: str | None = None
    size: int | None = None
    read_by_page: bool = False
    """The bot's page marked the chat read (``WPP.chat.markIsRead``) after this message arrived."""
    live: bool = False
    """A ready bot page saw it arrive as a live ``chat.new_message`` event."""
    edit_t_ms: int | None = None
    """When it was last edited (milliseconds), None if never."""
    reactions: dict[str, str] = field(default_factory=dict)
    """Who reacted with what (an empty reaction is removed from here)."""

    @property
    def from_me(self) -> bool:
        return self.origin != "customer"

    @property
    def participant(self) -> str | None:
        return self.sender if is_group(self.chat) else None

    @property
    def serialized(self) -> str:
        key = f"{'true' if self.from_me else 'false'}_{self.chat}_{self.id}"
        return f"{key}_{self.participant}" if self.participant else key

    @property
    def is_media(self) -> bool:
        return self.type in MEDIA_TYPES

    def to_json(self, world: World) -> dict[str, Any]:
        quoted = world.messages.get(self.quoted_id) if self.quoted_id else None
        return {
            "id": self.id,
            "serialized": self.serialized,
            "chat": self.chat,
            "from_me": self.from_me,
            "origin": self.origin,
            "sender": self.sender,
            "author": self.participant,
            "notify_name": world.contact_name(self.sender),
            "push_name": world.given_name(self.sender),
            "body": self.body,
            "type": self.type,
            "t": self.t,
            "ack": self.ack,
            "mentions": list(self.mentions),
            "quoted_id": self.quoted_id,
            "quoted": (
                {
                    "id": quoted.id,
                    "sender": quoted.sender,
                    "from_me": quoted.from_me,
                    "type": quoted.type,
                    "body": quoted.body,
                }
                if quoted is not None
                else None
            ),
            "is_media": self.is_media,
            "caption": self.caption,
            "mimetype": self.mimetype,
            "filename": self.filename,
            "size": self.size,
            "read_by_page": self.read_by_page,
            "live": self.live,
            "edited": self.edit_t_ms is not None,
            "edit_t_ms": self.edit_t_ms,
            "revoked": self.type == "revoked",
            "reactions": dict(self.reactions),
            "seq": self.seq,
        }


class World:
    """The account, its contacts, chats and messages (in arrival order)."""

    def __init__(
        self,
        me: str = "10000@c.us",
        me_name: str = "Lookalike Bot",
        *,
        me_lid: str | None = None,
        seed: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not valid_user_id(me):
            raise WorldError(f"the bot account must be a user id like 10000@c.us, not {me!r}")
        if me_lid is not None and not _LID_RE.match(me_lid):
            raise WorldError(f"the bot's LID must look like 123456789@lid, not {me_lid!r}")
        self.me = me
        self.me_lid = me_lid
        self.me_name = me_name
        self.lids: dict[str, str] = {}
        """``<n>@lid`` -> ``<digits>@c.us``: the pairs WhatsApp knows (the account's too)."""
        self._seed = seed
        self._clock = clock
        self.contacts: dict[str, str | None] = {}
        """Everyone the account knows, with the name they go by (None: only their number)."""
        self.unregistered: set[str] = set()
        """Numbers that are not on WhatsApp (besides ids that are no phone number at all)."""
        self.chats: dict[str, Chat] = {}
        self.messages: dict[str, Message] = {}
        self._seq = 0
        self.reset()

    def reset(self) -> None:
        """Back to the seeded world: two customers and a group with both, and no messages."""
        self.contacts = {self.me: self.me_name}
        self.unregistered = set()
        self.chats = {}
        self.messages = {}
        self.lids = {self.me_lid: self.me} if self.me_lid else {}
        self._seq = 0
        if self._seed:
            self.add_contact("4915111111111@c.us", "Alice", lid="140000000000001@lid")
            self.add_contact("4915222222222@c.us", "Bob", lid="140000000000002@lid")
            self.add_group(
                "120363000000000001@g.us",
                "Lookalike friends",
                ["4915111111111@c.us", "4915222222222@c.us"],
            )

    def now(self) -> int:
        return int(self._clock())

    # -- contacts and chats ---------------------------------------------------------------------

    def contact_name(self, user: str) -> str:
        """What the pages show for ``user``: their name, else ``+<digits>``."""
        return self.given_name(user) or "+" + user.split("@", 1)[0]

    def given_name(self, user: str) -> str | None:
        """The name ``user`` goes by (the look-alike's contact and push name are one), or
        None when the account knows only their number: what WA-JS's ContactModel ``name``
        and ``pushname`` and a message's ``notifyName`` carry."""
        if user == self.me_lid:
            return self.me_name
        return self.contacts.get(user) or self.contacts.get(self.lids.get(user, ""))

    def lid_of(self, user: str) -> str | None:
        """The ``<n>@lid`` of a phone id, if WhatsApp knows one."""
        for lid, phone in self.lids.items():
            if phone == user:
                return lid
        return None

    def pn_lid_entry(self, user: str) -> dict[str, str | None]:
        """``{lid, phoneNumber}`` of a person named either way (None where unknown)."""
        if user.endswith("@lid"):
            return {"lid": user, "phoneNumber": self.lids.get(user)}
        return {"lid": self.lid_of(user), "phoneNumber": user}

    def on_whatsapp(self, user: str) -> bool:
        """Whether ``user`` has a WhatsApp account: a user id not marked unregistered.

        What ``WPP.contact.queryWidExists`` answers (WA-JS: null for an id with no account).
        """
        return valid_user_id(user) and user not in self.unregistered

    def set_registered(self, user: str, registered: bool) -> None:
        """Mark a number as having (or not having) a WhatsApp account; raises
        :class:`WorldError` for an id that is no user id, or the bot's own."""
        if not valid_user_id(user):
            raise WorldError(f"not a user id (<digits>@c.us or <n>@lid): {user!r}")
        if user in (self.me, self.me_lid):
            raise WorldError("the bot account is on WhatsApp")
        if registered:
            self.unregistered.discard(user)
        else:
            self.unregistered.add(user)

    def add_contact(self, user: str, name: str | None = None, *, lid: str | None = None) -> str:
        """A person; ``lid`` pairs a phone id with its ``<n>@lid`` (both name the person)."""
        if not valid_user_id(user):
            raise WorldError(f"not a user id (<digits>@c.us or <n>@lid): {user!r}")
        if user in (self.me, self.me_lid):
            raise WorldError("the bot account cannot be its own customer")
        if lid is not None:
            if not _LID_RE.match(lid) or not user.endswith("@c.us"):
                raise WorldError(f"lid pairs a <digits>@c.us id with a <n>@lid id: {lid!r}")
            if self.lids.get(lid, user) != user or lid == self.me_lid:
                raise WorldError(f"{lid} is someone else's LID")
            self.lids[lid] = user
        if name:
            self.contacts[user] = name
        else:
            self.contacts.setdefault(user, None)
        return user

    def add_group(self, group: str, name: str, participants: Iterable[str]) -> Chat:
        if not _GROUP_RE.match(group):
            raise WorldError(f"not a group id (<digits>@g.us): {group!r}")
        chat = self.chats.get(group)
        if chat is None:
            chat = self.chats[group] = Chat(group, name, t=self.now())
        elif name:
            chat.name = name
        for member in participants:
            self.add_participant(chat, member)
        return chat

    def add_participant(self, chat: Chat, member: str) -> None:
        self.add_contact(member)
        if member not in chat.participants:
            chat.participants.append(member)

    def new_group_id(self) -> str:
        return f"1203630{secrets.randbelow(10**11):011d}@g.us"

    def chat(self, chat_id: str) -> Chat:
        chat = self.chats.get(chat_id)
        if chat is None:
            raise WorldError(f"no such chat: {chat_id!r}")
        return chat

    def open_chat(self, chat_id: str, name: str | None = None) -> Chat:
        """The chat with a person, created on first use (groups must exist already)."""
        chat = self.chats.get(chat_id)
        if chat is not None:
            return chat
        if not valid_user_id(chat_id):
            raise WorldError(
                f"no such chat: {chat_id!r} (groups are created with POST /control/group)"
                if is_group(chat_id)
                else f"not a chat id (<digits>@c.us, <n>@lid or <id>@g.us): {chat_id!r}"
            )
        self.add_contact(chat_id, name)
        chat = self.chats[chat_id] = Chat(chat_id, self.contact_name(chat_id), t=self.now())
        return chat

    # -- messages -------------------------------------------------------------------------------

    def chat_messages(self, chat_id: str) -> list[Message]:
        return [m for m in self.messages.values() if m.chat == chat_id]

    def last_message(self, chat_id: str) -> Message | None:
        for message in reversed(self.messages.values()):
            if message.chat == chat_id:
                return message
        return None

    def find_message(self, key: str) -> Message | None:
        """By inner id or by serialized key."""
        found = self.messages.get(key)
        if found is not None:
            return found
        for message in self.messages.values():
            if message.serialized == key:
                return message
        return None

    def add_message(
        self,
        chat_id: str,
        origin: Origin,
        body: str,
        *,
        author: str | None = None,
        type: str = "chat",
        mentions: Iterable[str] = (),
        quoted: str | None = None,
        message_id: str | None = None,
        mimetype: str | None = None,
        filename: str | None = None,
        size: int | None = None,
        name: str | None = None,
        ack: int = ACK_SERVER,
    ) -> Message:
        """Stores a message and updates the chat's order and unread count."""
        chat = self.open_chat(chat_id, name if origin == "customer" else None)
        if origin == "customer":
            if chat.is_group:
                if not author:
                    if not chat.participants:
                        raise WorldError(f"group {chat_id} has no members; name an author")
                    author = chat.participants[0]
                self.add_contact(author, name)
                self.add_participant(chat, author)
                sender = author
            else:
                if author and author != chat_id:
                    raise WorldError("author is only for groups; in a 1:1 chat it is the chat")
                sender = chat_id
        else:
            sender = self.me
        if type not in MESSAGE_TYPES:
            raise WorldError(f"type must be one of {sorted(MESSAGE_TYPES)}, not {type!r}")
        if message_id is None:
            message_id = new_message_id(origin)
        elif not _MESSAGE_ID_RE.match(message_id):
            raise WorldError(f"a message id is 8 to 64 letters and digits: {message_id!r}")
        if message_id in self.messages:
            raise WorldError(f"message id already used: {message_id}")
        mention_list = list(mentions)
        for mentioned in mention_list:
            if not valid_user_id(mentioned):
                raise WorldError(f"a mention is a user id: {mentioned!r}")
        quoted_id: str | None = None
        if quoted:
            target = self.find_message(quoted)
            if target is None or target.chat != chat_id:
                raise WorldError(f"quoted message {quoted!r} is not in {chat_id}")
            quoted_id = target.id
        self._seq += 1
        message = Message(
            id=message_id,
            chat=chat_id,
            origin=origin,
            sender=sender,
            body=body,
            t=self.now(),
            seq=self._seq,
            ack=ack,
            mentions=mention_list,
            quoted_id=quoted_id,
        )
        self.set_content(message, type, body, mimetype=mimetype, filename=filename, size=size)
        self.messages[message_id] = message
        chat.t = message.t
        if origin == "customer":
            chat.unread_count += 1
        else:
            # Writing in a chat (from the phone or the page) reads it, as in WhatsApp.
            chat.unread_count = 0
        if origin == "bot":
            chat.typing = False
        return message

    @staticmethod
    def set_content(
        message: Message,
        type: str,
        body: str,
        *,
        mimetype: str | None = None,
        filename: str | None = None,
        size: int | None = None,
    ) -> None:
        """Text goes to ``body``; for media it is the caption and ``body`` stays empty."""
        message.type = type
        if type in MEDIA_TYPES:
            message.body = ""
            message.caption = body or None
            message.mimetype = mimetype or MEDIA_TYPES[type]
            message.filename = filename
            message.size = size if size is not None else 1024 * (1 + len(body))
        else:
            message.body = body
            message.caption = message.mimetype = message.filename = None
            message.size = None

    def edit_message(self, key: str, body: str) -> Message:
        """The writer changes a text message (WhatsApp: "Edit"); media and deleted ones can't."""
        message = self._message(key)
        if message.origin == "bot":
            raise WorldError("the look-alike edits what people type, not the bot's messages")
        if message.type != "chat":
            raise WorldError(f"only text messages can be edited, not {message.type!r}")
        if not body.strip():
            raise WorldError("an edit needs the new text")
        message.body = body
        message.edit_t_ms = int(self._clock() * 1000)
        return message

    def revoke_message(self, key: str) -> Message:
        """Delete for everyone: the message becomes a ``revoked`` placeholder."""
        message = self._message(key)
        if message.type == "revoked":
            raise WorldError(f"message {key!r} is deleted already")
        self.set_content(message, "revoked", "")
        message.reactions.clear()
        return message

    def react(self, key: str, reaction: str, sender: str) -> Message:
        """``sender`` (a member of the chat, or the account) puts ``reaction`` on the message;
        an empty reaction takes theirs back."""
        message = self._message(key)
        if message.type == "revoked":
            raise WorldError("a deleted message takes no reactions")
        chat = self.chat(message.chat)
        members = set(chat.participants) if chat.is_group else {chat.id}
        if sender not in members | {self.me}:
            raise WorldError(f"{sender} is not in {chat.id}")
        if len(reaction) > 16:
            raise WorldError("a reaction is one emoji")
        if reaction:
            message.reactions[sender] = reaction
        else:
            message.reactions.pop(sender, None)
        return message

    def _message(self, key: str) -> Message:
        message = self.find_message(key)
        if message is None:
            raise WorldError(f"no such message: {key!r}")
        return message

    def mark_read_by_page(self, chat_id: str) -> int:
        """The bot's page read the chat: returns the unread count it had."""
        chat = self.chat(chat_id)
        previous = chat.unread_count
        chat.unread_count = 0
        for message in self.chat_messages(chat_id):
            if not message.from_me:
                message.read_by_page = True
        return previous

    def raise_acks(
        self, chat_id: str, ack: int, message_ids: Iterable[str] | None = None
    ) -> list[Message]:
        """Raises the ack of the account's own messages (never lowers one); returns the changed."""
        wanted = set(message_ids) if message_ids is not None else None
        changed: list[Message] = []
        for message in self.chat_messages(chat_id):
            if not message.from_me or message.ack < ACK_SERVER or message.ack >= ack:
                continue
            if wanted is not None and message.id not in wanted:
                continue
            message.ack = ack
            changed.append(message)
        return changed

    def snapshot(self) -> dict[str, Any]:
        return {
            "me": self.me,
            "me_lid": self.me_lid,
            "me_name": self.me_name,
            "contacts": [
                {"id": k, "name": self.contact_name(k), "lid": self.lid_of(k)}
                for k in self.contacts
                if k != self.me
            ],
            "lids": dict(self.lids),
            "unregistered": sorted(self.unregistered),
            "chats": [chat.to_json(self) for chat in self.sorted_chats()],
            "messages": [m.to_json(self) for m in self.messages.values()],
        }

    def saved(self) -> dict[str, Any]:
        """Everything :meth:`restore` needs to bring this world back, as JSON-ready data:
        ``{contacts: {id: name | null}, lids, unregistered, chats: [Chat fields],
        messages: [Message fields], seq}`` (chats and messages in their order)."""
        return {
            "contacts": dict(self.contacts),
            "lids": dict(self.lids),
            "unregistered": sorted(self.unregistered),
            "chats": [asdict(chat) for chat in self.chats.values()],
            "messages": [asdict(message) for message in self.messages.values()],
            "seq": self._seq,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        """The world :meth:`saved` gave; nobody is typing any more. Raises
        :class:`WorldError` for data it did not write (the world is then unchanged)."""
        try:
            contacts = {str(k): v for k, v in dict(saved["contacts"]).items()}
            lids = {str(k): str(v) for k, v in dict(saved["lids"]).items()}
            unregistered = {str(u) for u in saved["unregistered"]}
            chats = {c["id"]: Chat(**{**c, "typing": False}) for c in saved["chats"]}
            messages = {m["id"]: Message(**m) for m in saved["messages"]}
            seq = int(saved["seq"])
        except (KeyError, TypeError, ValueError) as exc:
            raise WorldError(f"not a saved look-alike world: {exc!r}") from None
        contacts[self.me] = self.me_name
        self.contacts, self.lids, self.unregistered = contacts, lids, unregistered
        self.chats, self.messages, self._seq = chats, messages, seq

    def sorted_chats(self) -> list[Chat]:
        last_seq = {m.chat: m.seq for m in self.messages.values()}
        return sorted(self.chats.values(), key=lambda c: (c.t, last_seq.get(c.id, 0)), reverse=True)
