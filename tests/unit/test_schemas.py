"""Records of the conversation pipeline: chat-id canonicalization, validation, JSON round trips,
and the exported JSON Schemas staying in step with the models."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import (
    ALL_MODELS,
    ChatState,
    DeadLetter,
    DeliveryReceipt,
    InboundMessage,
    InvalidChatIdError,
    LLMCall,
    MediaInfo,
    OutboundMessage,
    Ping,
    Pong,
    Record,
    Turn,
    canonical_chat_id,
    is_group,
    is_lid,
    is_newsletter,
    is_status_broadcast,
)
from schemas.export import DEFAULT_FOLDER, main, render_json_schemas, stale_json_schemas

pytestmark = pytest.mark.unit

ACCOUNT = "4915100000001@c.us"
LID_MAP = {"123456789012345@lid": "+49 170 1234567"}

# --- chat ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # c.us stays, surrounding whitespace goes, the server is lowercased
        ("491701234567@c.us", "491701234567@c.us"),
        ("  491701234567@c.us\n", "491701234567@c.us"),
        ("491701234567@C.US", "491701234567@c.us"),
        # Baileys' spelling
        ("491701234567@s.whatsapp.net", "491701234567@c.us"),
        ("491701234567@S.WhatsApp.Net", "491701234567@c.us"),
        # device suffixes
        ("123:45@s.whatsapp.net", "123@c.us"),
        ("123:45@c.us", "123@c.us"),
        # bare numbers
        ("+49 170 1234567", "491701234567@c.us"),
        ("491701234567", "491701234567@c.us"),
        ("+49-170-123 4567", "491701234567@c.us"),
        ("(0049) 170.1234567", "00491701234567@c.us"),
        # linked ids without a map stay linked ids
        ("123456789012345@lid", "123456789012345@lid"),
        ("123456789012345@LID", "123456789012345@lid"),
        ("123456789012345:7@lid", "123456789012345@lid"),
        # groups, channels, broadcasts are kept as they are
        ("120363025246125888@g.us", "120363025246125888@g.us"),
        ("491701234567-1600000000@g.us", "491701234567-1600000000@g.us"),
        ("120363025246125888@G.US", "120363025246125888@g.us"),
        ("120363144038483540@newsletter", "120363144038483540@newsletter"),
        ("status@broadcast", "status@broadcast"),
        ("1600000000@broadcast", "1600000000@broadcast"),
    ],
)
def test_canonical_chat_id(raw: str, expected: str) -> None:
    assert canonical_chat_id(raw) == expected
    assert canonical_chat_id(expected) == expected, "canonical ids are fixed points"


@pytest.mark.parametrize(
    ("raw", "lid_map", "expected"),
    [
        ("123456789012345@lid", LID_MAP, "491701234567@c.us"),
        ("123456789012345:3@lid", LID_MAP, "491701234567@c.us"),
        ("123456789012345@lid", {"123456789012345@lid": "491701234567@s.whatsapp.net"}, None),
        ("999@lid", LID_MAP, "999@lid"),
        ("123456789012345@lid", {}, "123456789012345@lid"),
        # the map is only for linked ids
        ("491701234567@c.us", {"491701234567@c.us": "1@c.us"}, "491701234567@c.us"),
    ],
)
def test_canonical_chat_id_with_lid_map(
    raw: str, lid_map: dict[str, str], expected: str | None
) -> None:
    assert canonical_chat_id(raw, lid_map) == (expected or "491701234567@c.us")


@pytest.mark.parametrize(
    ("raw", "lid_map", "why"),
    [
        ("", None, "empty"),
        ("   ", None, "empty"),
        ("@c.us", None, "no user part"),
        ("491701234567@", None, "no server part"),
        ("abc", None, "not a phone number"),
        ("+49 170 abc", None, "not a phone number"),
        ("+", None, "not a phone number"),
        ("49+170", None, "not a phone number"),
        ("491701234567@example.com", None, "unknown server"),
        ("491701234567@whatsapp.net", None, "unknown server"),
        ("alice@c.us", None, "must be digits"),
        ("+491701234567@c.us", None, "must be digits"),
        ("123:45:6@c.us", None, "must be digits"),
        ("123:@s.whatsapp.net", None, "must be digits"),
        ("abc@lid", None, "must be digits"),
        ("49 170@c.us", None, "whitespace"),
        ("a@b@c.us", None, "'@'"),
        ("123456789012345@lid", {"123456789012345@lid": "120363@g.us"}, "not a phone id"),
        ("123456789012345@lid", {"123456789012345@lid": "nonsense"}, "invalid id"),
    ],
)
def test_canonical_chat_id_rejects(raw: str, lid_map: dict[str, str] | None, why: str) -> None:
    with pytest.raises(ValueError, match="invalid WhatsApp chat id") as caught:
        canonical_chat_id(raw, lid_map)
    assert isinstance(caught.value, InvalidChatIdError)
    assert why in str(caught.value)


def test_canonical_chat_id_rejects_a_non_string() -> None:
    with pytest.raises(ValueError, match="expected a string"):
        canonical_chat_id(491701234567)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("chat_id", "group", "status", "newsletter", "lid"),
    [
        ("491701234567@c.us", False, False, False, False),
        ("120363025246125888@g.us", True, False, False, False),
        ("status@broadcast", False, True, False, False),
        ("1600000000@broadcast", False, False, False, False),
        ("120363144038483540@newsletter", False, False, True, False),
        ("123456789012345@lid", False, False, False, True),
    ],
)
def test_chat_id_kinds(
    chat_id: str, group: bool, status: bool, newsletter: bool, lid: bool
) -> None:
    assert is_group(chat_id) is group
    assert is_status_broadcast(chat_id) is status
    assert is_newsletter(chat_id) is newsletter
    assert is_lid(chat_id) is lid


# --- InboundMessage ----------------------------------------------------------------------------


def wa_message(**changes: Any) -> dict[str, Any]:
    """A message as the gateway's page script serialises it, shaped like whatsapp-web.js."""
    message: dict[str, Any] = {
        "id": {
            "fromMe": False,
            "remote": "491701234567@c.us",
            "id": "3EB0C767D26A1D8A9F23",
            "_serialized": "false_491701234567@c.us_3EB0C767D26A1D8A9F23",
        },
        "from": "491701234567@c.us",
        "to": "4915100000001@c.us",
        "author": None,
        "body": "Hallo, habt ihr morgen offen?",
        "type": "chat",
        "t": 1732550400,
        "fromMe": False,
        "isNewMsg": True,
        "hasMedia": False,
        "mentionedIds": [],
        "hasQuotedMsg": False,
        "ack": 1,
    }
    message.update(changes)
    return message


def inbound_from_wa(message: dict[str, Any], **overrides: Any) -> InboundMessage:
    """What the gateway does with such a dict (a minimal stand-in for its mapping code)."""
    group = str(message["from"]).endswith("@g.us")
    media = None
    if message.get("hasMedia"):
        media = {
            "mimetype": message["mimetype"],
            "size": message.get("size"),
            "filename": message.get("filename"),
            "caption": message.get("caption"),
            "duration_s": message.get("duration"),
        }
    fields: dict[str, Any] = {
        "account_id": "4915100000001@s.whatsapp.net",
        "message_id": message["id"]["id"],
        "serialized_id": message["id"].get("_serialized"),
        "chat_id": message["from"] if not message["fromMe"] else message["to"],
        "sender_id": (message["author"] if group else message["from"]),
        "author_id": message["author"],
        "from_me": message["fromMe"],
        "is_group": group,
        "mentioned_ids": message["mentionedIds"],
        "body": message["body"],
        "type": message["type"],
        "has_media": message["hasMedia"],
        "media": media,
        "quoted_message_id": message.get("quotedStanzaID"),
        "wa_timestamp": message["t"],
    }
    fields.update(overrides)
    return InboundMessage.model_validate(fields)


def test_inbound_message_from_a_whatsapp_dict() -> None:
    msg = inbound_from_wa(wa_message())
    assert msg.account_id == ACCOUNT
    assert msg.message_id == "3EB0C767D26A1D8A9F23"
    assert msg.chat_id == msg.sender_id == "491701234567@c.us"
    assert msg.wa_timestamp == datetime(2024, 11, 25, 16, 0, tzinfo=UTC)
    assert msg.received_at.tzinfo is not None
    assert msg.dedupe_key == f"{ACCOUNT}|491701234567@c.us|3EB0C767D26A1D8A9F23"
    assert not msg.sent_by_bot
    assert msg.media is None
    assert InboundMessage.model_validate_json(msg.model_dump_json()) == msg


def test_inbound_group_message_with_media_and_mentions() -> None:
    msg = inbound_from_wa(
        wa_message(
            **{
                "from": "120363025246125888@g.us",
                "author": "491709999999:12@s.whatsapp.net",
                "type": "image",
                "body": "@4915100000001 was ist das?",
                "hasMedia": True,
                "mimetype": "image/jpeg",
                "size": 48213,
                "caption": "@4915100000001 was ist das?",
                "mentionedIds": ["4915100000001@s.whatsapp.net"],
                "quotedStanzaID": "3EB0AAAA",
            }
        )
    )
    assert msg.is_group
    assert msg.sender_id == msg.author_id == "491709999999@c.us"
    assert msg.mentioned_ids == [ACCOUNT]
    assert msg.media == MediaInfo(
        mimetype="image/jpeg", size=48213, caption="@4915100000001 was ist das?"
    )
    assert msg.quoted_message_id == "3EB0AAAA"


def test_inbound_message_without_serialized_id() -> None:
    msg = inbound_from_wa(wa_message(id={"fromMe": False, "id": "3EB0FF"}))
    assert msg.serialized_id is None
    assert msg.message_id == "3EB0FF"


def test_inbound_timestamp_as_int_or_iso_string() -> None:
    as_int = inbound_from_wa(wa_message(t=1732550400))
    as_text = inbound_from_wa(wa_message(), wa_timestamp="2024-11-25T17:00:00+01:00")
    assert as_int.wa_timestamp == as_text.wa_timestamp
    assert as_text.wa_timestamp.tzinfo == UTC


def test_inbound_naive_datetime_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        inbound_from_wa(wa_message(), wa_timestamp=datetime(2024, 11, 25, 16, 0))


def test_inbound_group_flag_must_match_chat_id() -> None:
    with pytest.raises(ValidationError, match="is_group=True disagrees"):
        inbound_from_wa(wa_message(), is_group=True)
    with pytest.raises(ValidationError, match="is_group=False disagrees"):
        inbound_from_wa(
            wa_message(**{"from": "120363025246125888@g.us", "author": "491709999999@c.us"}),
            is_group=False,
        )


def test_inbound_sender_is_never_a_group() -> None:
    with pytest.raises(ValidationError, match=r"sender_id .* is a group"):
        inbound_from_wa(
            wa_message(**{"from": "120363025246125888@g.us"}), sender_id="120363025246125888@g.us"
        )


def test_inbound_has_media_requires_media() -> None:
    with pytest.raises(ValidationError, match="has_media is true but media is missing"):
        inbound_from_wa(wa_message(type="image"), has_media=True)


def test_inbound_sent_by_bot_requires_from_me() -> None:
    with pytest.raises(ValidationError, match="sent_by_bot requires from_me"):
        inbound_from_wa(wa_message(), sent_by_bot=True)
    mine = inbound_from_wa(wa_message(fromMe=True), sent_by_bot=True, sender_id=ACCOUNT)
    assert mine.chat_id == "4915100000001@c.us"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chat_id", "alice"),
        ("sender_id", "491701234567@example.com"),
        ("author_id", "@c.us"),
        ("mentioned_ids", ["491701234567@c.us", "bob@c.us"]),
        ("account_id", ""),
    ],
)
def test_inbound_invalid_ids_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match="invalid WhatsApp chat id"):
        inbound_from_wa(wa_message(), **{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [("message_id", ""), ("type", "poll_vote"), ("wa_timestamp", "yesterday")],
)
def test_inbound_invalid_values_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        inbound_from_wa(wa_message(), **{field: value})


def test_inbound_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        inbound_from_wa(wa_message(), isNewMsg=True)


def test_media_info_never_carries_bytes() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        MediaInfo(mimetype="image/jpeg", data=b"\xff\xd8")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        MediaInfo(mimetype="image/jpeg", size=-1)


def test_records_are_frozen() -> None:
    msg = inbound_from_wa(wa_message())
    with pytest.raises(ValidationError, match="frozen"):
        msg.body = "changed"  # type: ignore[misc]


# --- Turn, OutboundMessage, DeliveryReceipt, LLMCall --------------------------------------------

T0 = datetime(2024, 11, 25, 16, 0, tzinfo=UTC)


def turn(**changes: Any) -> Turn:
    fields: dict[str, Any] = {
        "turn_id": "t-1",
        "chat_id": "491701234567@s.whatsapp.net",
        "account_id": ACCOUNT,
        "sender_id": "491701234567@c.us",
        "seq": 0,
        "message_ids": ["3EB0A", "3EB0B"],
        "text": "Hallo\nhabt ihr offen?",
        "is_group": False,
        "first_received_at": T0,
        "last_received_at": T0 + timedelta(seconds=2),
    }
    fields.update(changes)
    return Turn.model_validate(fields)


def test_turn() -> None:
    built = turn()
    assert built.chat_id == "491701234567@c.us"
    assert Turn.model_validate_json(built.model_dump_json()) == built


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"message_ids": []}, "at least 1 item"),
        ({"message_ids": ["a", "a"]}, "duplicates"),
        ({"message_ids": [""]}, "at least 1 character"),
        ({"seq": -1}, "greater than or equal to 0"),
        ({"is_group": True}, "disagrees"),
        ({"last_received_at": T0 - timedelta(seconds=1)}, "before first_received_at"),
    ],
)
def test_turn_refuses(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        turn(**changes)


def outbound(**changes: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "outbound_id": "t-1:0",
        "chat_id": "491701234567@c.us",
        "account_id": ACCOUNT,
        "text": "Ja, von 9 bis 18 Uhr.",
        "turn_id": "t-1",
    }
    fields.update(changes)
    return OutboundMessage.model_validate(fields)


def test_outbound_defaults() -> None:
    message = outbound()
    assert (message.part, message.parts, message.kind) == (0, 1, "reply")
    assert outbound(turn_id=None, kind="manual").turn_id is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"text": ""}, "at least 1 character"),
        ({"text": " \n "}, "blank"),
        ({"text": "\u200b\u200d \ufeff"}, "blank"),
        ({"outbound_id": ""}, "at least 1 character"),
        ({"part": 2, "parts": 2}, "out of range"),
        ({"parts": 0}, "greater than or equal to 1"),
        ({"kind": "spam"}, "Input should be"),
        ({"chat_id": "status@broadcast"}, "never answered"),
    ],
)
def test_outbound_refuses(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        outbound(**changes)


def test_delivery_receipt() -> None:
    sent = DeliveryReceipt(
        outbound_id="t-1:0",
        chat_id="491701234567@c.us",
        account_id=ACCOUNT,
        status="sent",
        wa_message_id="true_491701234567@c.us_3EB0FF",
    )
    assert sent.reason is None
    failed = DeliveryReceipt(
        outbound_id="t-1:0",
        chat_id="491701234567@c.us",
        account_id=ACCOUNT,
        status="failed",
        reason="chat not found",
    )
    assert DeliveryReceipt.model_validate_json(failed.model_dump_json()) == failed


@pytest.mark.parametrize("reason", [None, ""])
def test_failed_delivery_needs_a_reason(reason: str | None) -> None:
    with pytest.raises(ValidationError, match="reason"):
        DeliveryReceipt(
            outbound_id="t-1:0",
            chat_id="491701234567@c.us",
            account_id=ACCOUNT,
            status="failed",
            reason=reason,
        )


def llm_call(**changes: Any) -> LLMCall:
    fields: dict[str, Any] = {
        "call_id": "t-1:llm:1",
        "turn_id": "t-1",
        "chat_id": "491701234567@c.us",
        "model": "qwen2.5:7b",
        "base_url": "http://localhost:11434/v1",
        "status": "ok",
        "attempt": 1,
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "latency_ms": 812.5,
        "http_status": 200,
    }
    fields.update(changes)
    return LLMCall.model_validate(fields)


def test_llm_call() -> None:
    call = llm_call()
    assert LLMCall.model_validate_json(call.model_dump_json()) == call
    skipped = llm_call(status="skipped", decision="token_budget", latency_ms=0, http_status=None)
    assert skipped.decision == "token_budget"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": "skipped"}, "needs a decision"),
        ({"status": "error"}, "needs the error"),
        ({"attempt": 0}, "greater than or equal to 1"),
        ({"prompt_tokens": -1}, "greater than or equal to 0"),
        ({"latency_ms": -0.1}, "greater than or equal to 0"),
        ({"http_status": 42}, "greater than or equal to 100"),
        ({"status": "maybe"}, "Input should be"),
    ],
)
def test_llm_call_refuses(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        llm_call(**changes)


# --- DeadLetter --------------------------------------------------------------------------------


@given(raw=st.binary(), key=st.none() | st.binary())
def test_dead_letter_round_trip_keeps_bytes(raw: bytes, key: bytes | None) -> None:
    letter = DeadLetter(
        source_topic="wa.inbound",
        partition=3,
        offset=1042,
        key=key,
        raw=raw,
        reason="invalid JSON",
        error_type="ValidationError",
        agent="guard",
    )
    data = letter.model_dump_json()
    back = DeadLetter.model_validate_json(data)
    assert back == letter
    assert back.raw == raw
    assert back.key == key


def test_dead_letter_json_holds_base64_of_non_utf8_bytes() -> None:
    raw = b"\xff\xfe{\x00not json\x80"
    letter = DeadLetter(
        source_topic="wa.inbound",
        partition=0,
        offset=7,
        key=b"491701234567@c.us",
        raw=raw,
        reason="not UTF-8",
        error_type="UnicodeDecodeError",
        agent="guard",
    )
    as_json = json.loads(letter.model_dump_json())
    assert isinstance(as_json["raw"], str)
    assert as_json["raw"] != raw.decode("latin-1")
    # standard base64 from other tools is accepted too
    standard = {**as_json, "raw": "//57AG5vdCBqc29ugA=="}
    assert DeadLetter.model_validate_json(json.dumps(standard)).raw == raw


def test_dead_letter_needs_a_reason() -> None:
    with pytest.raises(ValidationError, match="reason"):
        DeadLetter(
            source_topic="wa.inbound",
            partition=0,
            offset=0,
            raw=b"",
            reason="",
            error_type="ValueError",
            agent="guard",
        )


# --- ChatState ---------------------------------------------------------------------------------


def test_chat_state_defaults_and_pause() -> None:
    state = ChatState(chat_id="491701234567@s.whatsapp.net")
    assert state.chat_id == "491701234567@c.us"
    assert state.enabled
    assert state.consecutive_bot_replies == 0
    assert not state.is_paused(T0)

    paused = ChatState(chat_id="491701234567@c.us", paused_until=T0 + timedelta(minutes=30))
    assert paused.is_paused(T0)
    assert paused.is_paused(T0 + timedelta(minutes=29))
    assert not paused.is_paused(T0 + timedelta(minutes=30))
    assert ChatState.model_validate_json(paused.model_dump_json()) == paused


# --- the model registry and the exported JSON Schemas -------------------------------------------


def test_all_models_lists_the_pipeline_records() -> None:
    expected: set[type[Record]] = {
        Ping,
        Pong,
        InboundMessage,
        Turn,
        OutboundMessage,
        DeliveryReceipt,
        LLMCall,
        DeadLetter,
        ChatState,
    }
    assert expected <= set(ALL_MODELS.values()), "other stages may add records, none may vanish"
    for model in ALL_MODELS.values():
        assert issubclass(model, Record)


def test_exported_json_schemas_match_the_models() -> None:
    problems = stale_json_schemas(DEFAULT_FOLDER)
    assert not problems, "schemas/json/ is out of date; run python -m schemas.export\n" + "\n".join(
        problems
    )


def test_export_writes_checks_and_prunes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--check", str(tmp_path)]) == 1
    assert "missing:" in capsys.readouterr().err

    (tmp_path / "removed_model.json").write_text("{}\n")
    assert main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(render_json_schemas())
    assert main(["--check", str(tmp_path)]) == 0

    turn_file = tmp_path / "turn.json"
    turn_file.write_text(turn_file.read_text().replace('"seq"', '"sequence"'))
    (tmp_path / "extra.json").write_text("{}\n")
    assert main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"stale: {turn_file}" in err
    assert "left over:" in err
    assert "run python -m schemas.export" in err

    schema = json.loads((DEFAULT_FOLDER / "inbound_message.json").read_text())
    assert schema["additionalProperties"] is False
    assert "message_id" in schema["required"]
