"""All configuration, in one pydantic-settings class with one env prefix.

Every field here is a variable ``WABOT_<FIELD>`` in the environment or in ``.env``;
``.env.example`` lists them all (a unit test keeps the two in step). A bad value must
stop start-up with one line that names the variable, so :func:`load_settings` turns
pydantic's error into :class:`ConfigError` and the CLI entry points print only that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from yarl import URL

ENV_PREFIX = "WABOT_"

#: Broker URL schemes Faust's Kafka transport understands.
BROKER_SCHEMES = ("kafka", "aiokafka")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Settings(BaseSettings):
    """Settings of the app, the brokers the project starts, and logging."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- the Faust app -------------------------------------------------------
    app_id: str = Field("wabot", description="Faust app id: consumer group and topic prefix")
    broker_url: str = Field(
        "kafka://127.0.0.1:9092",
        description="Kafka bootstrap servers as kafka://host:port[;host:port]",
    )
    store: str = Field(
        "memory://", description="Table store: memory:// or rocksdb:// (needs rocksdict)"
    )
    data_dir: Path = Field(
        Path(".data"), description="Folder for broker logs, pid files and worker data"
    )
    topic_partitions: int = Field(8, ge=1, description="Partitions of topics the app creates")
    topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor of topics the app creates"
    )
    # Tansu joins a group in about half the session timeout; Faust's default (60 s)
    # would make the dev worker wait ~30 s. 6 s keeps failover quick on Kafka too.
    broker_session_timeout: float = Field(
        6.0, gt=0, description="Consumer group session timeout, seconds"
    )
    broker_heartbeat_interval: float = Field(
        1.0, gt=0, description="Consumer heartbeat interval, seconds"
    )
    broker_rebalance_timeout: float = Field(
        6.0, gt=0, description="Consumer group rebalance timeout, seconds"
    )
    web_host: str = Field("127.0.0.1", description="Host the worker's web server binds")
    web_port: int = Field(6066, ge=1, le=65535, description="Port of the worker's web server")

    # --- topics ----------------------------------------------------------------
    topic_ping: str = Field("pipeline.ping", description="Health-check input topic")
    topic_pong: str = Field("pipeline.pong", description="Health-check output topic")

    # --- logging ---------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level")
    log_format: Literal["text", "json"] = Field(
        "text", description="text: readable lines; json: one JSON object a line"
    )

    # --- brokers started by the project ---------------------------------------
    kafka_version: str = Field("4.1.1", description="Apache Kafka version fetched by Maven")
    kafka_home: Path = Field(
        Path.home() / ".cache" / "wabot" / "kafka",
        description="Cache folder for the Apache Kafka jars (outside the repo)",
    )
    kafka_heap: str = Field("512m", description="Java heap of the Apache Kafka broker")
    broker_start_timeout: float = Field(
        90.0, gt=0, description="Seconds to wait for a started broker to answer metadata"
    )

    @field_validator("data_dir", "kafka_home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("broker_url", "app_id", "store")
    @classmethod
    def _required(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a value is required")
        return value.strip()

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        for part in value.split(";"):
            url = URL(part if "://" in part else f"kafka://{part}")
            if url.scheme not in BROKER_SCHEMES:
                raise ValueError(
                    f"unknown broker scheme {url.scheme!r} in {value!r}; "
                    f"use {' or '.join(s + '://' for s in BROKER_SCHEMES)}"
                )
            if not url.host or url.explicit_port is None:
                raise ValueError(f"{part!r} needs a host and a port, as kafka://127.0.0.1:9092")
        return value

    @field_validator("store")
    @classmethod
    def _store_scheme(cls, value: str) -> str:
        if URL(value).scheme not in ("memory", "rocksdb", "aerospike"):
            raise ValueError(f"unknown table store {value!r}; use memory:// or rocksdb://")
        return value

    @property
    def bootstrap_servers(self) -> list[str]:
        """``host:port`` strings for plain aiokafka clients."""
        servers = []
        for part in self.broker_url.split(";"):
            url = URL(part if "://" in part else f"kafka://{part}")
            servers.append(f"{url.host}:{url.port}")
        return servers


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        message = item["msg"].removeprefix("Value error, ")
        given = item.get("input")
        shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
        parts.append(f"{env_name(field)}: {message}{shown}")
    return "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and ``.env``; raise :class:`ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(f"configuration error: {_describe(exc)}") from None


def _shown_default(name: str) -> str:
    default = Settings.model_fields[name].get_default(call_default_factory=True)
    if isinstance(default, Path) and Path.home() in default.parents:
        default = Path("~") / default.relative_to(Path.home())
    return str(default)


def env_example() -> str:
    """The text of ``.env.example``: every variable, its default and its meaning."""
    lines = [
        "# Every setting of wabot, with its default. Copy to .env and change what you need.",
        "# Regenerate with: python -m pipeline.settings > .env.example",
        "",
    ]
    for name, field in Settings.model_fields.items():
        lines += [f"# {field.description}", f"{env_name(name)}={_shown_default(name)}", ""]
    return "\n".join(lines)


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{env_name(name)}` | `{_shown_default(name)}` | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    print(markdown_table() if "--markdown" in sys.argv else env_example(), end="\n")
