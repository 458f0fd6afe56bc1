"""ModelCodec: pydantic records to JSON bytes and back; invalid input raises."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.kafka.codec import ModelCodec
from schemas.base import SCHEMA_VERSION
from schemas.ping import Ping

pytestmark = pytest.mark.unit

codec: ModelCodec[Ping] = ModelCodec(Ping)


def test_round_trip() -> None:
    ping = Ping(key="a")
    data = codec.dumps(ping)
    assert isinstance(data, bytes)
    assert codec.loads(data) == ping


def test_dumps_validates_a_dict() -> None:
    loaded = codec.loads(codec.dumps({"key": "a", "trace_id": "t1"}))
    assert isinstance(loaded, Ping)
    assert loaded.key == "a"
    assert loaded.trace_id == "t1"


def test_dumps_rejects_an_invalid_dict() -> None:
    with pytest.raises(ValidationError):
        codec.dumps({"key": ""})


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"{", json.dumps({"trace_id": "t"}).encode(), b'{"key": "a", "x": 1}'],
    ids=["garbage", "truncated", "missing-key", "unknown-field"],
)
def test_loads_rejects_invalid_input(payload: bytes) -> None:
    with pytest.raises(ValidationError):
        codec.loads(payload)


def test_clone_keeps_the_model() -> None:
    clone = codec.clone()
    assert isinstance(clone, ModelCodec)
    assert clone.model is Ping
    ping = Ping(key="b")
    assert clone.loads(clone.dumps(ping)) == ping


def test_records_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        Ping(key="a", unexpected=1)  # type: ignore[call-arg]


def test_record_defaults() -> None:
    first, second = Ping(key="a"), Ping(key="a")
    assert first.schema_version == SCHEMA_VERSION == 1
    assert first.trace_id
    assert first.trace_id != second.trace_id


@settings(database=None)
@given(key=st.text(min_size=1))
def test_round_trip_any_key(key: str) -> None:
    ping = Ping(key=key)
    assert codec.loads(codec.dumps(ping)) == ping
