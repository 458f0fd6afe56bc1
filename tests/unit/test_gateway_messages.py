"""Page messages (what bridge.js hands over) -> InboundMessage; the ids of our sends; QR."""

from __future__ import annotations

import pytest

from pipeline.gateway.messages import inbound_from_page, message_id_for
from pipeline.gateway.qr import png_qr, terminal_qr

ME = "10000@c.us"
ALICE = "4915111111111@c.us"
BOB = "4915222222222@c.us"
GROUP = "120363000000000001@g.us"


def page_message(**fields: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "id": "3AC1FAF4D3CC18A085C0",
        "serialized": f"false_{ALICE}_3AC1FAF4D3CC18A085C0",
        "fromMe": False,
        "chat": ALICE,
        "from": ALICE,
        "to": ME,
        "author": None,
        "body": "Are you open on Sunday?",
        "caption": None,
        "type": "chat",
        "t": 1_790_000_000,
        "mentioned": [],
        "quotedId": None,
        "isMedia": False,
    }
    raw.update(fields)
    return raw


def test_customer_message_becomes_a_record() -> None:
    record = inbound_from_page(page_message(), account_id=ME, sent_by_bot=False)
    assert (record.chat_id, record.sender_id, record.account_id) == (ALICE, ALICE, ME)
    assert (record.message_id, record.serialized_id) == (
        "3AC1FAF4D3CC18A085C0",
        f"false_{ALICE}_3AC1FAF4D3CC18A085C0",
    )
    assert (record.from_me, record.sent_by_bot, record.is_group, record.has_media) == (
        False,
        False,
        False,
        False,
    )
    assert record.body == "Are you open on Sunday?"
    assert record.wa_timestamp.timestamp() == 1_790_000_000


def test_group_message_has_author_and_mentions() -> None:
    raw = page_message(
        chat=GROUP, **{"from": GROUP}, author="4915222222222@s.whatsapp.net", mentioned=[ME, "x"]
    )
    record = inbound_from_page(raw, account_id=ME, sent_by_bot=False)
    assert (record.chat_id, record.is_group) == (GROUP, True)
    assert record.sender_id == record.author_id == BOB  # canonical spelling
    assert record.mentioned_ids == [ME]  # an id that is no id is dropped


def test_group_message_without_author_is_refused() -> None:
    with pytest.raises(ValueError, match="no author"):
        inbound_from_page(page_message(chat=GROUP), account_id=ME, sent_by_bot=False)


def test_own_messages_tell_the_bot_from_the_owner() -> None:
    raw = page_message(fromMe=True, **{"from": ME, "to": ALICE})
    bot = inbound_from_page(raw, account_id=ME, sent_by_bot=True, trace_id="t-1")
    owner = inbound_from_page(raw, account_id=ME, sent_by_bot=False)
    assert (bot.sender_id, bot.sent_by_bot, bot.trace_id) == (ME, True, "t-1")
    assert (owner.from_me, owner.sent_by_bot) == (True, False)
    customer = inbound_from_page(page_message(), account_id=ME, sent_by_bot=True)
    assert customer.sent_by_bot is False  # only our own messages can be the bot's


def test_media_keeps_metadata_and_caption_not_bytes() -> None:
    raw = page_message(
        type="image",
        body="/9j/4AAQSkZJRg...",
        caption="our menu",
        isMedia=True,
        mimetype="image/jpeg",
        size=48213,
        filename=None,
    )
    record = inbound_from_page(raw, account_id=ME, sent_by_bot=False)
    assert record.has_media and record.media is not None
    assert (record.media.mimetype, record.media.size, record.media.caption) == (
        "image/jpeg",
        48213,
        "our menu",
    )
    assert record.body == "our menu"  # the thumbnail in body never reaches a prompt


def test_unknown_types_and_lid_ids() -> None:
    raw = page_message(
        type="interactive_v9", chat="123456789012345@lid", **{"from": "123456789012345@lid"}
    )
    record = inbound_from_page(raw, account_id=ME, sent_by_bot=False)
    assert record.type == "unknown"
    assert record.chat_id == "123456789012345@lid"
    mapped = inbound_from_page(
        raw, account_id=ME, sent_by_bot=False, lid_map={"123456789012345@lid": ALICE}
    )
    assert mapped.chat_id == mapped.sender_id == ALICE


@pytest.mark.parametrize(
    ("fields", "error"),
    [({"chat": None}, "chat id"), ({"id": ""}, "message_id"), ({"chat": "status"}, "chat id")],
)
def test_malformed_messages_raise_value_error(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        inbound_from_page(page_message(**fields), account_id=ME, sent_by_bot=False)


def test_message_ids_are_derived_from_the_outbound_id() -> None:
    first = message_id_for(ME, "turn-1-0")
    assert first == message_id_for(ME, "turn-1-0")  # a resend finds the same id
    assert first != message_id_for(ME, "turn-1-1")
    assert first != message_id_for("10001@c.us", "turn-1-0")
    assert first.startswith("3EB0") and len(first) == 20
    assert first == first.upper()


def test_qr_for_terminal_and_png() -> None:
    code = "2@abc,def,ghi,jkl"
    text = terminal_qr(code)
    lines = text.splitlines()
    # Half blocks: two rows of modules a line; 21 modules + borders for the smallest code.
    assert len(lines) >= 12 and len({len(line) for line in lines}) == 1 and "▄" in text
    assert png_qr(code).startswith(b"\x89PNG\r\n\x1a\n")
