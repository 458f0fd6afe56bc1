"""Keyed pseudonyms (agents/pseudonyms.py) and the analytics events built with them
(agents/analytics.py's Deriver): stable, keyed, canonical, and free of raw ids and text."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.analytics import Deriver
from agents.pseudonyms import Pseudonymizer
from schemas import (
    AnalyticsEvent,
    DeliveryReceipt,
    InboundMessage,
    InvalidChatIdError,
    LLMCall,
    OutboundMessage,
)

pytestmark = pytest.mark.unit

KEY = "k" * 32
PSEUDONYM = re.compile(r"p:[0-9a-f]{32}")
T0 = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)


def test_a_pseudonym_is_the_truncated_hmac_of_the_canonical_id() -> None:
    expected = hmac.new(KEY.encode(), b"491701234567@c.us", hashlib.sha256).hexdigest()[:32]
    assert Pseudonymizer(KEY).chat("491701234567@c.us") == f"p:{expected}"
    assert Pseudonymizer(KEY.encode()).chat("491701234567@c.us") == f"p:{expected}"


def test_pseudonyms_are_stable_and_distinct() -> None:
    one, again = Pseudonymizer(KEY), Pseudonymizer(KEY)
    assert one.chat("491701234567@c.us") == again.chat("491701234567@c.us")
    assert one.chat("491701234567@c.us") != one.chat("491701234568@c.us")
    assert one.ref("turn-1") == again.ref("turn-1") != one.ref("turn-2")


def test_another_key_gives_another_pseudonym() -> None:
    assert Pseudonymizer(KEY).chat("491701234567@c.us") != Pseudonymizer(KEY + "x").chat(
        "491701234567@c.us"
    )


@pytest.mark.parametrize(
    "spelling",
    [
        "491701234567@s.whatsapp.net",
        "491701234567:12@s.whatsapp.net",
        " 491701234567@C.US ",
        "+49 170 1234567",
    ],
)
def test_every_spelling_of_one_person_is_one_pseudonym(spelling: str) -> None:
    p = Pseudonymizer(KEY)
    assert p.chat(spelling) == p.chat("491701234567@c.us")


def test_an_unmapped_lid_is_its_own_pseudonym() -> None:
    p = Pseudonymizer(KEY)
    assert p.chat("123456789012345@lid") != p.chat("491701234567@c.us")


def test_not_a_chat_id_and_an_empty_key_are_refused() -> None:
    with pytest.raises(InvalidChatIdError):
        Pseudonymizer(KEY).chat("alice")
    with pytest.raises(ValueError, match="empty"):
        Pseudonymizer("")


def test_the_key_never_shows_in_the_repr() -> None:
    assert KEY not in repr(Pseudonymizer(KEY))
    assert KEY not in repr(Deriver(Pseudonymizer(KEY)))


def test_scrub_replaces_mentions_by_pseudonyms() -> None:
    p = Pseudonymizer(KEY)
    text = "@491709999999 and @123456789012345, call 030 1234"
    scrubbed = p.scrub(text, ["491709999999@s.whatsapp.net", "123456789012345@lid"])
    assert scrubbed == (
        f"@{p.chat('491709999999@c.us')} and @{p.chat('123456789012345@lid')}, call 030 1234"
    )
    # Without the list the digits are taken for a phone number.
    assert p.scrub("hi @491709999999") == f"hi @{p.chat('491709999999@c.us')}"


# --- the events ---------------------------------------------------------------------------------

ACCOUNT, PERSON, GROUP, AUTHOR = (
    "4915100000001@c.us",
    "491701234567@c.us",
    "120363000000001@g.us",
    "491709999999@c.us",
)


def raw_strings(event: AnalyticsEvent) -> str:
    return event.model_dump_json()


def assert_no_raw(event: AnalyticsEvent, *secrets: str) -> None:
    dumped = raw_strings(event)
    for secret in secrets:
        assert secret not in dumped, (secret, dumped)


def test_inbound_group_message_with_a_mention() -> None:
    p = Pseudonymizer(KEY)
    message = InboundMessage(
        account_id=ACCOUNT,
        message_id="3EB0AAAA",
        serialized_id=f"false_{GROUP}_3EB0AAAA_{AUTHOR}",
        chat_id=GROUP,
        sender_id=AUTHOR,
        author_id=AUTHOR,
        from_me=False,
        is_group=True,
        mentioned_ids=[ACCOUNT],
        body="@4915100000001 what are your hours?",
        type="chat",
        has_media=False,
        quoted_message_id="3EB0BBBB",
        wa_timestamp=T0,
    )
    event = Deriver(p).inbound(message)
    assert (event.kind, event.is_group, event.message_type, event.at) == (
        "inbound",
        True,
        "chat",
        T0,
    )
    assert event.chat == p.chat(GROUP)
    assert event.sender == p.chat(AUTHOR)
    assert event.account == p.chat(ACCOUNT)
    assert event.mentions == [p.chat(ACCOUNT)]
    assert event.message == p.ref("3EB0AAAA")
    assert event.text is None
    assert event.text_length == len(message.body)
    assert_no_raw(event, "4915100000001", "491709999999", "120363000000001", "3EB0", "hours")

    with_text = Deriver(p, include_text=True).inbound(message)
    assert with_text.text == f"@{p.chat(ACCOUNT)} what are your hours?"
    assert_no_raw(with_text, "4915100000001", "491709999999", "120363000000001")


def test_outbound_delivery_and_llm_call_free_text_is_dropped() -> None:
    p = Pseudonymizer(KEY)
    deriver = Deriver(p)
    out = deriver.outbound(
        OutboundMessage(
            outbound_id="notice-0123456789abcdef0123",
            chat_id=PERSON,
            account_id=ACCOUNT,
            text="Call me on 491701234567",
            kind="notice",
        )
    )
    assert (out.outbound, out.outbound_kind, out.text) == (
        p.ref("notice-0123456789abcdef0123"),
        "notice",
        None,
    )
    failed = deriver.delivery(
        DeliveryReceipt(
            outbound_id="t1-0",
            chat_id=PERSON,
            account_id=ACCOUNT,
            status="failed",
            reason="491701234567 is not on WhatsApp",
            wa_message_id="3EB0CCCC",
        )
    )
    assert (failed.status, failed.outbound, failed.message) == (
        "failed",
        p.ref("t1-0"),
        p.ref("3EB0CCCC"),
    )
    call = deriver.llm_call(
        LLMCall(
            call_id="c1",
            turn_id="t1",
            chat_id=PERSON,
            model="m",
            base_url="http://127.0.0.1:1/v1",
            status="error",
            error="HTTP 400 for 491701234567",
            decision="because 491701234567 said so",
            prompt_tokens=3,
            latency_ms=12.5,
        )
    )
    assert (call.turn, call.status, call.prompt_tokens, call.latency_ms, call.decision) == (
        p.ref("t1"),
        "error",
        3,
        12.5,
        "other",
    )
    assert call.account is None
    for event in (out, failed, call):
        assert_no_raw(event, "491701234567", "4915100000001", "notice-", "3EB0", "127.0.0.1")
        assert event.chat == p.chat(PERSON)
        assert event.trace_id.startswith("p:")
        assert AnalyticsEvent.model_validate_json(event.model_dump_json()) == event


def test_derive_decodes_and_refuses_bad_bytes() -> None:
    deriver = Deriver(Pseudonymizer(KEY))
    call = LLMCall(call_id="c", turn_id="t", chat_id=PERSON, model="m", base_url="", status="ok")
    assert deriver.derive("llm_call", call.model_dump_json().encode()).kind == "llm_call"
    with pytest.raises(ValueError):
        deriver.derive("inbound", b"not json")
    with pytest.raises(ValueError):
        deriver.derive("outbound", call.model_dump_json().encode())


def test_every_id_in_an_event_is_a_pseudonym() -> None:
    schema = AnalyticsEvent.model_json_schema()
    id_fields = [
        name
        for name, prop in schema["properties"].items()
        if "p:" in str(prop.get("pattern", ""))
        or any("p:" in str(b.get("pattern", "")) for b in prop.get("anyOf", []))
        or "p:" in str(prop.get("items", {}).get("pattern", ""))
    ]
    assert sorted(id_fields) == sorted(
        [
            "chat",
            "account",
            "sender",
            "message",
            "quoted_message",
            "mentions",
            "turn",
            "outbound",
            "call",
        ]
    )
    assert PSEUDONYM.fullmatch(Pseudonymizer(KEY).ref("x"))


# --- the settings -------------------------------------------------------------------------------


def test_analytics_without_a_key_refuses_to_start_and_the_key_is_never_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pipeline.config.settings import ConfigError, load_settings

    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("WABOT_ANALYTICS_ENABLED", "true")
    monkeypatch.delenv("WABOT_ANALYTICS_HMAC_KEY", raising=False)
    with pytest.raises(ConfigError, match="WABOT_ANALYTICS_HMAC_KEY: required when"):
        load_settings()
    monkeypatch.setenv("WABOT_ANALYTICS_HMAC_KEY", "  ")
    with pytest.raises(ConfigError, match="WABOT_ANALYTICS_HMAC_KEY"):
        load_settings()

    monkeypatch.setenv("WABOT_ANALYTICS_HMAC_KEY", KEY)
    settings = load_settings()
    assert settings.analytics_hmac_key.get_secret_value() == KEY
    assert KEY not in repr(settings) and KEY not in str(settings)
    assert KEY not in settings.model_dump_json()
    monkeypatch.setenv("WABOT_ANALYTICS_ENABLED", "false")
    monkeypatch.delenv("WABOT_ANALYTICS_HMAC_KEY")
    assert load_settings().analytics_enabled is False
