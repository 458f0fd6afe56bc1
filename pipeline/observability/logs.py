"""Log lines for people (text) and for machines (JSON), each with the record's trace_id.

Agents set :data:`trace_id_var` while they handle a record; a filter copies it onto every
log record, so any line logged during that work, by our code or a library's, carries it.
Faust hands :func:`logging_config` to :func:`logging.config.dictConfig` when the worker starts.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from agents.context import trace_id_var
from pipeline.observability.outage import outage_filter

#: Loggers of the libraries the worker runs on. Their INFO lines (Faust's recovery tables,
#: every group join, every service starting, each migration step) are how the libraries
#: report progress: a start writes ~300 of them. WABOT_LOG_LIBRARIES (WARNING) sets their
#: level apart from ours, so a default start shows our lines and every library warning.
LIBRARIES = ("faust", "mode", "aiokafka", "alembic", "uvicorn", "httpx", "httpx2", "openai")

#: mode's service life cycle ("[^--Producer]: Starting...") logged by the classes we
#: derive from Faust's: in our loggers' names, but the libraries' chatter.
_LIFECYCLE = re.compile(
    r"^\[\^-*[\w.]+\]: (Starting|Stopping|Shutting down|Cleanup|Gathering|Waiting for|"
    r"-Stop|Stopped|Restarting|Flushing|Wait for|Flush)"
)


class LifecycleFilter(logging.Filter):
    """Drop mode's service start/stop lines below WARNING, whoever's logger they use
    (when WABOT_LOG_LIBRARIES is above INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not _LIFECYCLE.match(record.getMessage())


_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "trace_id",
}


class TraceIdFilter(logging.Filter):
    """Stamp each record with the current trace_id (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            record.trace_id = trace_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, trace_id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", trace_id_var.get()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


#: Libraries whose lines below these levels carry what they handle (record values, SQL
#: parameters, request bodies, paths with query strings): they stay at this level whatever
#: WABOT_LOG_LEVEL says, so a DEBUG log holds no message text. aiokafka's producer and
#: Faust's topics log each record's key and value at DEBUG; aiosqlite logs every call with
#: its SQL parameters and every result at DEBUG; SQLAlchemy logs statements at INFO and
#: parameters and rows at DEBUG; openai, httpx and httpcore log request bodies at DEBUG;
#: uvicorn's access log has paths with their query strings at INFO.
QUIET_LIBRARIES: dict[str, str] = {
    "aiokafka": "INFO",
    "faust.topics": "INFO",
    "aiosqlite": "INFO",
    "sqlalchemy": "WARNING",
    "openai": "INFO",
    "httpx": "INFO",
    "httpcore": "INFO",
    "uvicorn.access": "WARNING",
}

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _at_least(level: str, floor: str) -> str:
    return level if _LEVELS.index(level) >= _LEVELS.index(floor) else floor


TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(trace_id)s] %(name)s: %(message)s"


def logging_config(
    level: str = "INFO", fmt: str = "text", libraries: str = "WARNING"
) -> dict[str, Any]:
    """A dictConfig for the worker: one stderr handler, text or JSON. Our loggers at
    ``level`` (WABOT_LOG_LEVEL), the :data:`LIBRARIES` at the higher of ``level`` and
    ``libraries`` (WABOT_LOG_LIBRARIES), those of :data:`QUIET_LIBRARIES` never below their
    floor. Levels are DEBUG, INFO, WARNING or ERROR."""
    formatter: dict[str, Any]
    formatter = {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    of_libraries = _at_least(level, libraries)
    filters = ["trace_id", "outage"]
    if of_libraries not in ("DEBUG", "INFO"):
        filters.append("lifecycle")
    loggers = {name: {"level": level} for name in ("pipeline", "agents")}
    loggers |= {name: {"level": of_libraries} for name in LIBRARIES}
    loggers |= {
        name: {"level": _at_least(of_libraries, floor)} for name, floor in QUIET_LIBRARIES.items()
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "trace_id": {"()": TraceIdFilter},
            "lifecycle": {"()": LifecycleFilter},
            "outage": {"()": outage_filter},
        },
        "formatters": {"main": formatter},
        "handlers": {
            "main": {
                "class": "logging.StreamHandler",
                "formatter": "main",
                "filters": filters,
                "stream": "ext://sys.stderr",
            }
        },
        # Faust's CLI sets the root level from its own -l flag (default WARN); levels
        # on our loggers and the libraries' make the settings win regardless.
        "loggers": loggers,
        "root": {"level": level, "handlers": ["main"]},
    }
