"""All configuration, in one pydantic-settings class with one env prefix.

Every field here is a variable ``WABOT_<FIELD>`` in the environment or in ``.env``;
``.env.example`` lists them all (a unit test keeps the two in step). A bad value must
stop start-up with one line that names the variable, so :func:`load_settings` turns
pydantic's error into :class:`ConfigError` and the CLI entry points print only that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from yarl import URL

ENV_PREFIX = "WABOT_"

#: Broker URL schemes Faust's Kafka transport understands.
BROKER_SCHEMES = ("kafka", "aiokafka")


#: Topics only the app's own agents use; their names carry the app id (Settings.topic).
INTERNAL_TOPICS = frozenset({"turns", "llm_results", "guard_ticks"})


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
    consumer_fetch_max_wait_ms: int = Field(
        25, ge=1, le=1500, description="Longest a fetch waits for new records, ms"
    )
    consumer_max_poll_records: int = Field(
        500,
        ge=1,
        description="Most records one fetch hands the agents (aiokafka max_poll_records); "
        "with WABOT_RESPOND_MAX_QUEUED it bounds the turns a worker holds",
    )
    stream_buffer_maxsize: int = Field(
        4096,
        ge=1,
        description="Records waiting for each agent before Faust stops fetching its "
        "partitions (Faust's stream_buffer_maxsize)",
    )
    producer_linger_ms: int = Field(
        0, ge=0, le=1000, description="How long the producer waits to fill a batch, ms"
    )
    web_host: str = Field("127.0.0.1", description="Host the worker's web server binds")
    web_port: int = Field(6066, ge=1, le=65535, description="Port of the worker's web server")

    # --- topics ----------------------------------------------------------------
    topic_ping: str = Field("pipeline.ping", description="Health-check input topic")
    topic_pong: str = Field("pipeline.pong", description="Health-check output topic")
    topic_inbound: str = Field("wa.inbound", description="Messages from WhatsApp (gateway)")
    topic_events: str = Field("wa.events", description="Gateway connection and auth state")
    topic_turns: str = Field(
        "chat.turns", description="Internal, named {app_id}-<this>: validated, deduplicated turns"
    )
    topic_outbound: str = Field("wa.outbound", description="Replies to send (respond, API)")
    topic_delivery: str = Field("wa.delivery", description="Delivery receipts (gateway sink)")
    topic_llm_calls: str = Field("llm.calls", description="One record per LLM call or skip")
    topic_llm_results: str = Field(
        "llm.results", description="Internal, named {app_id}-<this>: LLM replies for the window"
    )
    topic_guard_ticks: str = Field(
        "guard.ticks", description="Internal, named {app_id}-<this>: timers that close bursts"
    )
    topic_dlq: str = Field("pipeline.dlq", description="Dead letters: bad input with a reason")
    topic_decisions: str = Field(
        "wa.decisions", description="Why a message got no answer: one GuardDecision per record"
    )
    topic_analytics: str = Field(
        "analytics.events", description="Pseudonymized events for analytics (WABOT_ANALYTICS_*)"
    )
    topic_control: str = Field(
        "chat.control",
        description="Operator controls from the API (pause, resume, profiles) for the guard",
    )
    inbound_retention_days: float = Field(
        30.0, gt=0, description="Retention of wa.inbound (replays read it), days"
    )
    topic_retention_days: float = Field(
        7.0, gt=0, description="Retention of the other topics the app creates, days"
    )
    inbound_first_start: Literal["recent", "earliest"] = Field(
        "recent",
        description="Where a consumer group without a committed offset starts on wa.inbound: "
        "recent (now - WABOT_IGNORE_OLDER_THAN_S) or earliest",
    )

    # --- guard ---------------------------------------------------------------
    burst_quiet_s: float = Field(
        1.5, ge=0, description="Messages of one chat this close together form one turn (0: off)"
    )
    ignore_older_than_s: float = Field(
        900.0,
        gt=0,
        description="Messages received this long after they were written are not answered, s",
    )
    takeover_pause_s: float = Field(
        1800.0, ge=0, description="The owner typing in a chat pauses the bot there this long"
    )
    allow_list: list[str] = Field(
        default_factory=list, description="If set, answer only these chat ids (JSON list)"
    )
    block_list: list[str] = Field(
        default_factory=list, description="Never answer these chat ids (JSON list)"
    )
    group_prefix: str = Field(
        "!bot", description="In groups, answer messages starting with this (or mentioning us)"
    )
    dedupe_window: int = Field(500, ge=1, description="Message ids remembered per chat")
    unreadable_notice: str = Field(
        "I can only read text messages. Could you write your question?",
        min_length=1,
        description="Sent at most once per chat and UTC day for a message the bot cannot read "
        "(voice note, sticker, photo without caption, ...)",
    )
    unreadable_notice_enabled: bool = Field(
        True, description="Send WABOT_UNREADABLE_NOTICE (false: such messages are only recorded)"
    )

    # --- rate limits ---------------------------------------------------------
    rate_chat_per_minute: int = Field(6, ge=0, description="Replies per chat per minute (0: off)")
    rate_sender_per_day: int = Field(200, ge=0, description="Replies per sender per day (0: off)")
    daily_token_budget: int = Field(
        1_000_000, ge=0, description="LLM tokens per account per UTC day, all workers (0: off)"
    )
    loop_max_bot_replies: int = Field(
        20, ge=0, description="Bot replies in a row without a quiet gap before it stops (0: off)"
    )
    loop_quiet_reset_s: float = Field(
        600.0, gt=0, description="A chat quiet this long counts as a human pause (loop guard)"
    )
    limit_notice: str = Field(
        "I'm getting a lot of messages right now; I'll answer again in a little while.",
        description="The one polite notice sent when a limit is reached",
    )

    # --- the LLM ---------------------------------------------------------------
    llm_base_url: str = Field(
        "",
        description="OpenAI-compatible base URL; the worker needs one (`make dev` starts the "
        "built-in stand-in and sets it)",
    )
    llm_api_key: str = Field("", description="API key for the LLM endpoint")
    llm_model: str = Field("gpt-4o-mini", description="Model name sent to the endpoint")
    llm_timeout_s: float = Field(30.0, gt=0, description="Timeout of one LLM call, seconds")
    llm_max_tokens: int = Field(512, ge=1, description="max_tokens of each reply (always sent)")
    llm_max_message_chars: int = Field(
        4000,
        ge=100,
        description="A turn longer than this is cut, each of its messages on its own and "
        "the last one kept first; longer window entries are cut too; the cut is logged and "
        "recorded on chat.turns and llm.calls",
    )
    llm_temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature")
    llm_retries: int = Field(
        4, ge=0, description="Retries of 429, 5xx, timeouts and refused connections"
    )
    llm_backoff_s: float = Field(0.5, gt=0, description="First retry delay, doubled each time")
    llm_backoff_max_s: float = Field(20.0, gt=0, description="Longest retry delay")
    llm_fallback_base_urls: list[str] = Field(
        default_factory=list, description="Endpoints tried after the main one (JSON list)"
    )
    llm_fallback_reply: str = Field(
        "Sorry, I can't answer right now. I'll get back to you soon.",
        description="Sent when every LLM endpoint failed",
    )
    system_prompt: str = Field(
        "You are a friendly, concise assistant answering WhatsApp messages for a small business.",
        description="System prompt (a chat's persona overrides it)",
    )
    context_turns: int = Field(20, ge=1, description="Messages kept in a chat's context window")
    context_token_budget: int = Field(
        3000, ge=100, description="Approximate tokens of context sent with each prompt"
    )
    context_idle_expiry_s: float = Field(
        86400.0, gt=0, description="A window idle this long starts afresh"
    )
    max_reply_chars: int = Field(
        1500, ge=50, description="Longer replies are split into several messages"
    )
    respond_max_in_flight: int = Field(
        256, ge=1, description="Turns of different chats answered at once per worker"
    )
    respond_max_queued: int = Field(
        4000,
        ge=2,
        description="Turns a worker holds in memory before it stops fetching chat.turns, "
        "and turns its guard makes ahead of the replies before it stops reading wa.inbound "
        "(both go on at half); bounds memory and keeps replies coming under a backlog",
    )
    llm_prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="USD per million prompt and completion tokens by model, for replay "
        'reports (JSON: {"gpt-4o-mini": [0.15, 0.6]})',
    )

    # --- replays (set by `faust -A pipeline replay` for the worker it runs) ----------
    replay_mode: bool = Field(
        False, description="Set by replay: bursts close by message time only, never by the clock"
    )
    replay_original_replies: Path | None = Field(
        None,
        description="Set by replay --context original: the recorded replies (LLMResult JSONL) "
        "that go into each chat's window instead of the replayed ones",
    )

    # --- the WhatsApp gateway ------------------------------------------------------
    gateway_name: str = Field(
        "main", description="Name of this account's gateway: consumer group, profile folder"
    )
    gateway_in_worker: bool = Field(
        False, description="Run the gateway inside `faust -A pipeline worker` (single worker)"
    )
    gateway_url: str = Field(
        "https://web.whatsapp.com/", description="The page the gateway opens (WhatsApp Web)"
    )
    gateway_lookalike: bool = Field(
        False,
        description="`python -m pipeline.dev` (make dev): serve the built-in WhatsApp "
        "look-alike and point the gateway at it",
    )
    lookalike_port: int = Field(
        8090,
        ge=0,
        le=65535,
        description="Port of the look-alike `python -m pipeline.dev` serves (0: any free port)",
    )
    gateway_web_port: int = Field(
        6067, ge=1, le=65535, description="Web port of `faust -A pipeline.gateway worker`"
    )
    gateway_profile_dir: Path | None = Field(
        None, description="Chromium profile (keeps the login); default <data_dir>/gateway/<name>"
    )
    chromium_path: str = Field(
        "/usr/bin/chromium", description="Chromium executable (empty: Playwright's own browser)"
    )
    gateway_headless: bool = Field(True, description="Run Chromium without a window")
    gateway_page_timeout_s: float = Field(
        60.0, gt=0, description="Seconds for WhatsApp Web to load and WA-JS to attach"
    )
    gateway_restart_backoff_s: float = Field(
        1.0, gt=0, description="First wait before restarting a crashed browser, doubled each time"
    )
    gateway_restart_backoff_max_s: float = Field(
        60.0, gt=0, description="Longest wait between browser restarts"
    )
    gateway_recycle_hours: float = Field(
        24.0, ge=0, description="Restart the browser this often; Chromium grows over days (0: off)"
    )
    gateway_catchup_messages: int = Field(
        50, ge=0, description="Unread messages fetched per chat after each (re)start"
    )
    send_typing_ms_per_char: float = Field(
        30.0, ge=0, description="'typing...' shown before a send, per character of the text"
    )
    send_typing_max_s: float = Field(3.0, ge=0, description="Longest 'typing...' before a send")
    send_min_gap_chat_s: float = Field(
        1.0, ge=0, description="Shortest gap between two sends to one chat"
    )
    send_min_gap_account_s: float = Field(
        0.3, ge=0, description="Shortest gap between two sends of the account"
    )
    send_retries: int = Field(
        3,
        ge=0,
        description="Retries of a send that failed for a passing reason (network, no answer) "
        "before it is reported failed; an unregistered number or unknown chat is not retried",
    )
    send_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Longest wait for WhatsApp Web to take one send ('typing...' included); "
        "then the chat is checked and the send retried or reported failed (timeout)",
    )
    send_max_age_s: float = Field(
        3600.0, gt=0, description="Replies older than this are reported failed, not sent"
    )
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="Stop waits this long for a clean shutdown, then exits, s"
    )
    commit_interval_s: float = Field(
        2.8, gt=0, description="How often finished offsets are committed, seconds"
    )

    # --- analytics -------------------------------------------------------------
    analytics_enabled: bool = Field(
        False, description="Derive the pseudonymized analytics.events topic"
    )
    analytics_hmac_key: SecretStr = Field(
        SecretStr(""),
        description="Secret key of the pseudonyms in analytics.events (required when enabled; "
        "e.g. 64 random hex digits); never logged",
    )
    analytics_include_text: bool = Field(
        False, description="Copy message texts into analytics.events (off: only their length)"
    )

    @field_validator("analytics_hmac_key")
    @classmethod
    def _key_when_enabled(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if info.data.get("analytics_enabled") and not value.get_secret_value().strip():
            raise ValueError(
                "required when WABOT_ANALYTICS_ENABLED is true: a long random secret, e.g. "
                "the output of `python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        return value

    # --- store -----------------------------------------------------------------
    database_url: SecretStr = Field(
        SecretStr(""),
        description="Conversation store: empty for SQLite in <WABOT_DATA_DIR>/wabot.db, or "
        "postgresql+asyncpg://user:password@host:5432/database",
    )
    archive_enabled: bool = Field(
        True,
        description="The worker archives the topics into the store (consumer group "
        "<WABOT_APP_ID>-archive); false with `faust -A pipeline archive` archives in a process "
        "of its own",
    )
    archive_batch_size: int = Field(
        500, ge=1, le=10_000, description="Most records the archive writes in one transaction"
    )
    archive_retry_max_s: float = Field(
        30.0, gt=0, description="Longest wait between the archive's retries of a store that is down"
    )

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        if not text:
            return SecretStr("")
        from pipeline.store.engine import normalized_url

        return SecretStr(normalized_url(text))

    # --- operator API ------------------------------------------------------------
    api_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Bearer tokens by name for the web endpoints, JSON "
        '{"ops": "<long random secret>"}; empty: one is made in <data_dir>/api-token',
    )
    metrics_public: bool = Field(
        True, description="Serve /metrics without a token (Prometheus scrapes it)"
    )
    api_port: int = Field(
        8014, ge=1, le=65535, description="Port of the operator API (`faust -A pipeline api`)"
    )
    api_in_worker: bool = Field(
        False,
        description="Serve the operator API and dashboard inside `faust -A pipeline worker` "
        "too (development; `make dev` sets it)",
    )
    api_requests_per_minute: int = Field(
        600, ge=0, description="Requests per token and minute to the operator API (0: off)"
    )
    api_scheduler_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often the API looks for scheduled messages due, s"
    )
    api_idle_timeout_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="The operator API closes a connection that sends no request for this "
        "long (a new one, or kept alive after an answer), s",
    )
    api_request_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="The operator API answers 408 and closes a connection whose request "
        "(its headers and body) has not fully arrived this long after its first byte, s",
    )

    # --- process ---------------------------------------------------------------
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="Event loop of faust -A pipeline (worker, api, replay): uvloop or asyncio; "
        "the standalone gateway (pipeline.gateway) keeps asyncio",
    )

    # --- logging ---------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO",
        description="Log level of the project and Faust; libraries that log payloads (record "
        "values, SQL parameters, request bodies) stay at INFO or above, so no level logs a "
        "message text",
    )
    log_libraries: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING",
        description="Log level of the libraries (Faust, mode, aiokafka, alembic, uvicorn, "
        "httpx, openai), never below WABOT_LOG_LEVEL; INFO shows their progress lines "
        "(recovery tables, group joins, services starting)",
    )
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

    @field_validator("data_dir", "kafka_home", "gateway_profile_dir", "replay_original_replies")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @field_validator("gateway_profile_dir", "replay_original_replies", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

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
    def profile_dir(self) -> Path:
        """The gateway's Chromium profile folder (the WhatsApp login lives there)."""
        return self.gateway_profile_dir or self.data_dir / "gateway" / self.gateway_name

    def topic(self, key: str) -> str:
        """The name of topic ``key`` (``"inbound"`` for ``topic_inbound``, ...).

        Internal topics (:data:`INTERNAL_TOPICS`) carry the app id, as Faust's changelogs
        do (``{app_id}-{name}``): two apps on one cluster (a staging bot, a replay) then
        never read each other's turns. Public topics are shared and named as set.
        """
        name: str = getattr(self, f"topic_{key}")
        return f"{self.app_id}-{name}" if key in INTERNAL_TOPICS else name

    @property
    def bootstrap_servers(self) -> list[str]:
        """``host:port`` strings for plain aiokafka clients."""
        servers = []
        for part in self.broker_url.split(";"):
            url = URL(part if "://" in part else f"kafka://{part}")
            servers.append(f"{url.host}:{url.port}")
        return servers


def topic_keys() -> list[str]:
    """The short names of the topic settings (``inbound`` for ``topic_inbound``, ...)."""
    return [
        name.removeprefix("topic_")
        for name, field in Settings.model_fields.items()
        if name.startswith("topic_") and field.annotation is str
    ]


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        message = item["msg"].removeprefix("Value error, ")
        given = item.get("input")
        secret = (
            field in Settings.model_fields and Settings.model_fields[field].annotation is SecretStr
        )
        shown = f" (got {given!r})" if isinstance(given, str | int | float) and not secret else ""
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
    if default is None:
        return ""
    if isinstance(default, Path) and Path.home() in default.parents:
        default = Path("~") / default.relative_to(Path.home())
    return str(default)


def env_example() -> str:
    """The text of ``.env.example``: every variable, its default and its meaning."""
    lines = [
        "# Every setting of wabot, with its default. Copy to .env and change what you need.",
        "# Regenerate with: python -m pipeline.config.settings > .env.example",
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
