"""Log lines carry the trace_id of the task that logs them, in text and in JSON."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
from collections.abc import Iterator

import pytest

from agents.context import traced
from pipeline.observability.logs import TEXT_FORMAT, JsonFormatter, TraceIdFilter, logging_config

pytestmark = pytest.mark.unit


def _capture(name: str, formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(TraceIdFilter())
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, stream


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def json_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logger, stream = _capture("wabot.test.logs.json", JsonFormatter())
    yield logger, stream
    logger.handlers = []


def test_json_line_carries_trace_id_and_extras(
    json_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_logger
    with traced("abc123"):
        logger.info("hello %s", "there", extra={"chat": "x"})
    logger.warning("outside")

    inside, outside = _json_lines(stream)
    assert inside["trace_id"] == "abc123"
    assert inside["level"] == "INFO"
    assert inside["logger"] == "wabot.test.logs.json"
    assert inside["message"] == "hello there"
    assert inside["chat"] == "x"
    assert inside["ts"]
    assert outside["trace_id"] == "-"
    assert outside["level"] == "WARNING"
    assert "chat" not in outside


def test_json_line_includes_exception(json_logger: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_logger
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed")
    (line,) = _json_lines(stream)
    assert "RuntimeError: boom" in str(line["exc_info"])


def test_text_line_shows_trace_id() -> None:
    logger, stream = _capture("wabot.test.logs.text", logging.Formatter(TEXT_FORMAT))
    try:
        with traced("abc123"):
            logger.info("inside")
        logger.info("outside")
    finally:
        logger.handlers = []
    inside, outside = stream.getvalue().splitlines()
    assert "[abc123]" in inside
    assert "wabot.test.logs.text: inside" in inside
    assert "[-]" in outside


async def test_trace_id_is_per_task(json_logger: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_logger

    async def work(trace_id: str) -> None:
        with traced(trace_id):
            for step in range(3):
                logger.info("%s step %d", trace_id, step)
                await asyncio.sleep(0)

    await asyncio.gather(work("task-a"), work("task-b"))

    lines = _json_lines(stream)
    assert len(lines) == 6
    owners = [str(line["message"]).split()[0] for line in lines]
    # The two tasks really ran interleaved, not one after the other.
    assert owners[:2] == ["task-a", "task-b"], owners
    for line in lines:
        assert str(line["message"]).startswith(f"{line['trace_id']} "), line
    assert {line["trace_id"] for line in lines} == {"task-a", "task-b"}


@pytest.fixture
def handlers_before() -> Iterator[list[logging.Handler]]:
    """The root handlers before the test; after it, the logging set-up is put back."""
    root = logging.getLogger()
    names = ("pipeline", "agents", "faust", "mode", "aiokafka")
    saved_root = (root.handlers[:], root.level)
    saved = {name: logging.getLogger(name).level for name in names}
    yield saved_root[0]
    for handler in root.handlers:
        if handler not in saved_root[0]:
            handler.close()
    root.handlers = saved_root[0]
    root.setLevel(saved_root[1])
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_logging_config_is_accepted_by_dictconfig(handlers_before: list[logging.Handler]) -> None:
    root = logging.getLogger()
    logging.config.dictConfig(logging_config("DEBUG", "json", libraries="DEBUG"))
    assert root.level == logging.DEBUG
    added = [h for h in root.handlers if h not in handlers_before]
    assert len(added) == 1
    assert isinstance(added[0].formatter, JsonFormatter)
    assert any(isinstance(f, TraceIdFilter) for f in added[0].filters)
    for name in ("pipeline", "agents", "faust", "mode"):
        assert logging.getLogger(name).level == logging.DEBUG


def test_libraries_log_at_their_own_level_and_their_service_lines_drop(
    handlers_before: list[logging.Handler],
) -> None:
    """At the default WABOT_LOG_LIBRARIES (WARNING), Faust and aiokafka say only what went
    wrong, our INFO lines stay, and mode's "Starting..." lines go even from our loggers."""
    root = logging.getLogger()
    logging.config.dictConfig(logging_config("INFO", "text"))
    assert logging.getLogger("faust.tables.recovery").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("aiokafka.consumer").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("pipeline.kafka").getEffectiveLevel() == logging.INFO
    added = next(h for h in root.handlers if h not in handlers_before)

    def shown(message: str, level: int = logging.INFO) -> bool:
        record = logging.LogRecord("pipeline.kafka.transport", level, "", 0, message, (), None)
        return bool(added.filter(record))

    assert not shown("[^--TunedConsumer]: Starting...")
    assert not shown("[^-PipelineApp]: Stopping...")
    assert shown("[^-PipelineApp]: Stopping...", logging.WARNING)
    assert shown("worker ready in 4.2s (group joined, tables recovered)")
