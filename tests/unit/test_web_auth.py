"""Tokens of the web endpoints: configured ones, or one made once in a 0600 file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from pipeline.api.tokens import api_tokens, token_file, token_name
from pipeline.config.settings import load_settings


def test_configured_tokens_are_used_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WABOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WABOT_API_TOKENS", json.dumps({"ops": "s3cret-ops", "ci": "s3cret-ci"}))
    tokens = api_tokens(load_settings())
    assert tokens == {"ops": "s3cret-ops", "ci": "s3cret-ci"}
    assert token_name("Bearer s3cret-ci", tokens) == "ci"
    assert token_name("Bearer s3cret", tokens) is None
    assert token_name("Basic s3cret-ops", tokens) is None
    assert token_name(None, tokens) is None
    assert not token_file(load_settings()).exists()
    assert "s3cret" not in repr(load_settings())


def test_without_tokens_one_is_made_once_readable_by_the_owner_only(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("WABOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("WABOT_API_TOKENS", raising=False)
    settings = load_settings()
    first = api_tokens(settings)
    path = token_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first["local"]) == 64
    assert api_tokens(settings) == first  # kept, not made again
    assert token_name(f"Bearer {first['local']}", first) == "local"
