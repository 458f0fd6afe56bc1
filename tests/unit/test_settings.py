"""Settings: defaults, one-line errors that name the variable, ``.env`` and ``.env.example``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config.settings import ENV_PREFIX, ConfigError, Settings, env_name, load_settings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = REPO / ".env.example"
FAUST = Path(sys.executable).with_name("faust")
ENV_LINE = re.compile(r"^\s*(?:#\s*)?(WABOT_[A-Z0-9_]+)=")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No WABOT_* variable from the caller's shell and no ``.env`` from the repo."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_load() -> None:
    settings = load_settings()
    assert settings.app_id == "wabot"
    assert settings.broker_url == "kafka://127.0.0.1:9092"
    assert settings.bootstrap_servers == ["127.0.0.1:9092"]
    assert settings.topic_partitions == 8
    assert settings.log_format == "text"


def test_bootstrap_servers_splits_on_semicolon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WABOT_BROKER_URL", "kafka://a:1;b:2")
    assert load_settings().bootstrap_servers == ["a:1", "b:2"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WABOT_TOPIC_PARTITIONS", "abc"),
        ("WABOT_BROKER_URL", "http://h:1"),
        ("WABOT_BROKER_URL", "kafka://h"),
        ("WABOT_BROKER_URL", ""),
        ("WABOT_LOG_FORMAT", "xml"),
    ],
    ids=["malformed-number", "unknown-scheme", "missing-port", "empty-required", "bad-literal"],
)
def test_bad_value_raises_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert variable in message
    assert "\n" not in message
    assert message.strip()


def test_worker_cli_exits_2_with_one_line_on_bad_config() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["WABOT_TOPIC_PARTITIONS"] = "abc"
    result = subprocess.run(
        [str(FAUST), "-A", "pipeline", "worker"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].strip()
    assert "WABOT_TOPIC_PARTITIONS" in lines[0]
    assert "Traceback" not in result.stderr


def test_env_example_lists_every_setting() -> None:
    regenerate = "run python -m pipeline.config.settings > .env.example"
    assert ENV_EXAMPLE.is_file(), f".env.example is missing; {regenerate}"
    listed = {
        match.group(1)
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if (match := ENV_LINE.match(line))
    }
    expected = {env_name(field) for field in Settings.model_fields}
    assert listed == expected, (
        f".env.example is out of date (missing: {sorted(expected - listed)}, "
        f"unknown: {sorted(listed - expected)}); {regenerate}"
    )


def test_dotenv_in_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WABOT_APP_ID=fromdotenv\n", encoding="utf-8")
    assert load_settings().app_id == "fromdotenv"


def test_configuration_page_gets_the_generated_settings_table() -> None:
    """docs/configuration.md holds the marker that the docs' hook (docs/hooks/generated.py)
    replaces with ``markdown_table()`` at every build; tests/unit/test_docs.py checks the
    built page."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "docs_hooks_generated", REPO / "docs" / "hooks" / "generated.py"
    )
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert hook.SETTINGS_MARKER in page, "docs/configuration.md lost its settings-table marker"
    rendered = hook.render(page)
    missing = [
        env_name(name)
        for name in Settings.model_fields
        if f"| `{env_name(name)}` |" not in rendered
    ]
    assert not missing, f"the generated settings table misses {missing}"
