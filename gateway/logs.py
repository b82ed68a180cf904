"""Structured logs: one line per event on stderr, as ``key=value`` text or as JSON.

Call sites name an event and its fields: ``log_event(logger, logging.INFO,
"batch.committed", height=4, stored=1000)``. The formatter prints
``2026-11-24T10:00:00.123Z INFO batch.committed height=4 stored=1000`` or, with
``format = "json"``, ``{"ts": ..., "level": "info", "event": "batch.committed", ...}``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

LOGGER_NAME = "anchorgate"


def _timestamp(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def _text_value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="\n'):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        parts = [_timestamp(record.created), record.levelname, record.getMessage()]
        parts += [f"{key}={_text_value(value)}" for key, value in fields.items()]
        if record.exc_info:
            parts.append(f"error={_text_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        document.update(getattr(record, "fields", {}))
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure(level: str = "info", fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Send anchorgate's events to ``stream`` (stderr) at ``level`` in ``fmt``."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}")


def log_event(logger: logging.Logger, level: int, event: str, **fields: object) -> None:
    """Log one event with its fields (cheap when the level is off)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})
