"""Page messages and events (what bridge.js hands over) -> InboundMessage; our sends; LIDs; QR."""

from __future__ import annotations

import pytest

from pipeline.gateway.messages import (
    event_from_page,
    find_own_send,
    inbound_from_page,
    inner_id,
    lids_in,
    message_id_for,
)
from pipeline.gateway.qr import png_qr, terminal_qr
from pipeline.gateway.sends import OwnSends, SentRef
from tables import LidMap

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


def test_names_from_the_page_travel_with_the_record() -> None:
    raw = page_message(senderName="  Alice   Smith ", chatName="Alice Smith")
    record = inbound_from_page(raw, account_id=ME, sent_by_bot=False)
    assert (record.sender_name, record.chat_name) == ("Alice Smith", "Alice Smith")
    group = page_message(
        chat=GROUP, **{"from": GROUP}, author=BOB, senderName="Bob", chatName="Lookalike friends"
    )
    record = inbound_from_page(group, account_id=ME, sent_by_bot=False)
    assert (record.sender_name, record.chat_name) == ("Bob", "Lookalike friends")


def test_missing_blank_or_odd_names_are_none_and_long_ones_cut() -> None:
    for value in (None, "", "   ", 42, ["Alice"]):
        raw = page_message(senderName=value, chatName=value)
        record = inbound_from_page(raw, account_id=ME, sent_by_bot=False)
        assert (record.sender_name, record.chat_name) == (None, None)
    record = inbound_from_page(page_message(senderName="A" * 500), account_id=ME, sent_by_bot=False)
    assert record.sender_name == "A" * 200
    # Our own messages carry no sender name (the chat keeps its name).
    own = page_message(fromMe=True, senderName="Lookalike Bot", chatName="Alice")
    record = inbound_from_page(own, account_id=ME, sent_by_bot=True)
    assert (record.sender_name, record.chat_name) == (None, "Alice")


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


# --- own sends whatever id WhatsApp keeps --------------------------------------


def _ref(outbound: str = "turn-1-0") -> SentRef:
    return SentRef(outbound, ALICE, ME, "trace-1")


def test_inner_id_of_serialized_keys() -> None:
    assert inner_id(f"true_{ALICE}_3EB0ABC") == "3EB0ABC"
    assert inner_id(f"true_{GROUP}_3EB0ABC_{ME}") == "3EB0ABC"
    assert inner_id("3EB0ABC") == "3EB0ABC"


def test_a_send_is_ours_by_requested_returned_and_echo_id() -> None:
    """WhatsApp assigns its own id; the echo comes before the call returns."""
    own = OwnSends()
    flight = own.begin(ALICE, "Hello Alice", _ref(), "3EB0REQUESTED")
    assert own.get("3EB0REQUESTED") is not None  # kept id: recognised as before
    # The echo under WhatsApp's own id, while the send is in flight: ours.
    assert own.echo(ALICE, "Hello Alice", "3EB0ASSIGNED") == _ref()
    # A second message with the same words (the owner typing it) is not claimed twice.
    assert own.echo(ALICE, "Hello Alice", "3A0OWNER") is None
    assert own.finish(flight, "3EB0ASSIGNED") == "3EB0ASSIGNED"
    assert own.in_flight == 0
    # After the call returned, the echo (processed late) is still ours, by the returned id.
    assert own.echo(ALICE, "anything", "3EB0ASSIGNED") == _ref()


def test_an_echo_in_another_chat_or_with_other_text_is_not_ours() -> None:
    own = OwnSends()
    flight = own.begin(ALICE, "Hello Alice", _ref(), "3EB0REQUESTED")
    assert own.echo(BOB, "Hello Alice", "3EB0X1") is None
    assert own.echo(ALICE, "Hello Bob", "3EB0X2") is None
    own.abort(flight)
    assert own.echo(ALICE, "Hello Alice", "3EB0X3") is None  # no longer in flight


def test_finish_without_a_returned_id_reports_the_echo() -> None:
    own = OwnSends()
    flight = own.begin(ALICE, "Hi", _ref(), "3EB0REQUESTED")
    own.echo(ALICE, " Hi ", "3EB0ECHO")  # WhatsApp trims what it sends
    assert own.finish(flight, None) == "3EB0ECHO"
    other = own.begin(ALICE, "Hi again", _ref("turn-2-0"), "3EB0REQ2")
    assert own.finish(other, "") == "3EB0REQ2"


def test_own_sends_forget_the_oldest() -> None:
    own = OwnSends(remember=2)
    for n in range(3):
        own.keep(f"id{n}", _ref(f"o{n}"))
    assert own.get("id0") is None and own.get("id2") is not None


def test_duplicate_check_finds_the_requested_id() -> None:
    recent = [{"id": "3EB0OTHER", "body": "x", "t": 10}, {"id": "3EB0MINE", "body": "y", "t": 5}]
    assert find_own_send(recent, wa_id="3EB0MINE", text="zzz", since=100) == "3EB0MINE"


def test_duplicate_check_finds_our_text_when_the_id_was_not_kept() -> None:
    """After a crash between send and record, the resend finds the text."""
    created = 1_790_000_000.4
    recent = [
        {"id": "3EB0OLD", "body": "Yes, we open at 9.", "t": 1_789_999_000},  # long before
        {"id": "3EB0TAKEN", "body": "Yes, we open at 9.", "t": 1_790_000_001},  # another send
        {"id": "3EB0FOUND", "body": "Yes, we open at 9.", "t": 1_790_000_000},
    ]
    found = find_own_send(
        recent,
        wa_id="3EB0ASKED",
        text="Yes, we open at 9.",
        since=created,
        taken=lambda i: i == "3EB0TAKEN",
    )
    assert found == "3EB0FOUND"  # whole seconds: t may be a little before created_at
    assert find_own_send(recent, wa_id="3EB0ASKED", text="other", since=created) is None
    assert (
        find_own_send(recent[:1], wa_id="3EB0ASKED", text=recent[0]["body"], since=created) is None
    )


# --- LIDs -----------------------------------------------------------------------------

ALICE_LID = "140000000000001@lid"
ME_LID = "190000000000001@lid"


def test_lids_in_names_every_lid_of_a_message() -> None:
    raw = page_message(
        chat=GROUP,
        **{"from": GROUP},
        author=ALICE_LID,
        mentioned=[ME_LID, BOB],
        quotedParticipant="190000000000001:12@lid",
    )
    assert lids_in(raw) == {ALICE_LID, ME_LID}


def test_same_message_under_phone_and_lid_is_one_chat() -> None:
    """The same id under @c.us and @lid must have one dedupe key."""
    lids = {ALICE_LID: ALICE}
    by_phone = inbound_from_page(page_message(), account_id=ME, sent_by_bot=False, lid_map=lids)
    by_lid = inbound_from_page(
        page_message(chat=ALICE_LID, **{"from": ALICE_LID}),
        account_id=ME,
        sent_by_bot=False,
        lid_map=lids,
    )
    assert by_lid.chat_id == by_lid.sender_id == ALICE
    assert by_lid.dedupe_key == by_phone.dedupe_key


def test_a_mention_of_the_bots_lid_is_a_mention_of_the_account() -> None:
    raw = page_message(
        chat=GROUP, **{"from": GROUP}, author=ALICE_LID, mentioned=[ME_LID], body="@1900 hi"
    )
    record = inbound_from_page(
        raw, account_id=ME, sent_by_bot=False, lid_map={ME_LID: ME, ALICE_LID: ALICE}
    )
    assert record.mentioned_ids == [ME]
    assert record.author_id == ALICE


def test_quoted_from_me() -> None:
    quoting = page_message(quotedId="3EB0ABC", quotedFromMe=True)
    assert inbound_from_page(quoting, account_id=ME, sent_by_bot=False).quoted_from_me
    by_gateway = page_message(quotedId="3EB0ABC", quotedFromMe=False)
    record = inbound_from_page(by_gateway, account_id=ME, sent_by_bot=False, quoted_from_me=True)
    assert record.quoted_from_me and record.quoted_message_id == "3EB0ABC"
    plain = inbound_from_page(page_message(quotedFromMe=True), account_id=ME, sent_by_bot=False)
    assert not plain.quoted_from_me  # nothing quoted


def test_lid_map_reads_table_and_recent_pairs() -> None:
    lids = LidMap({ALICE_LID: ALICE})
    assert ALICE_LID in lids and lids[ALICE_LID] == ALICE
    assert lids.learn(ALICE_LID, ALICE) is False  # known: nothing to produce
    assert lids.learn(ME_LID, ME) is True
    assert dict(lids) == {ALICE_LID: ALICE, ME_LID: ME}
    assert "x@lid" not in lids and 3 not in lids


# --- edits, deletes, reactions --------------------------------------------------


def test_edit_becomes_an_edit_record() -> None:
    raw = page_message(body="Open on Saturday?", editT=1_790_000_100_000, editId="3AEDIT")
    record = event_from_page("edit", raw, account_id=ME)
    assert (record.event, record.type, record.subtype) == ("edit", "protocol", "message_edit")
    assert record.target_message_id == "3AC1FAF4D3CC18A085C0"
    assert record.body == "Open on Saturday?"
    assert record.message_id != record.target_message_id
    assert record.wa_timestamp.timestamp() == 1_790_000_100  # milliseconds understood
    again = event_from_page("edit", raw, account_id=ME)
    assert again.message_id == record.message_id  # redelivered: deduped by the guard
    second = event_from_page("edit", {**raw, "body": "Sunday?", "editT": 2}, account_id=ME)
    assert second.message_id != record.message_id


def test_revoke_and_reaction_records() -> None:
    revoke = event_from_page(
        "revoke",
        {
            "target": "3AC1",
            "id": "3AREV",
            "chat": GROUP,
            "fromMe": False,
            "from": GROUP,
            "author": ALICE_LID,
            "revokeType": "sender_revoke",
        },
        account_id=ME,
        lid_map={ALICE_LID: ALICE},
    )
    assert (revoke.event, revoke.type, revoke.subtype) == ("revoke", "protocol", "sender_revoke")
    assert (revoke.sender_id, revoke.author_id, revoke.is_group) == (ALICE, ALICE, True)
    assert revoke.target_message_id == "3AC1" and revoke.body == ""
    reaction = {"target": "3EB0MINE", "chat": ALICE, "sender": ALICE, "reaction": "👍", "t": 5}
    liked = event_from_page("reaction", reaction, account_id=ME)
    assert (liked.event, liked.type, liked.reaction, liked.sender_id) == (
        "reaction",
        "reaction",
        "👍",
        ALICE,
    )
    removed = event_from_page("reaction", {**reaction, "reaction": "", "t": 6}, account_id=ME)
    assert removed.reaction == "" and removed.message_id != liked.message_id
    mine = event_from_page(
        "reaction", {**reaction, "sender": ME_LID}, account_id=ME, lid_map={ME_LID: ME}
    )
    assert mine.from_me and mine.sender_id == ME


@pytest.mark.parametrize(
    ("kind", "raw", "error"),
    [
        ("poll", {"chat": ALICE}, "unknown event"),
        ("revoke", {"chat": ALICE}, "without the message"),
        ("reaction", {"chat": GROUP, "target": "x"}, "no author"),
    ],
)
def test_malformed_events_raise_value_error(kind: str, raw: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        event_from_page(kind, raw, account_id=ME)
