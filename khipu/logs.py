"""Log lines a person can read and a machine can parse: logfmt by default, JSON on request.

Use `log.info("message", extra={"fields": {"key": value}})`, or the `event` helper.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOG_FORMATS = ("logfmt", "json")


class LogfmtFormatter(logging.Formatter):
    """`ts=... level=info logger=khipu.node msg="..." key=value ...`"""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the same keys as the logfmt form."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields.update(getattr(record, "fields", {}))
    if record.exc_info:
        fields["error"] = repr(record.exc_info[1])
    return fields


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n'):
        return json.dumps(text)
    return text


def configure_logging(log_format: str = "logfmt", level: str = "info") -> None:
    """Send the node's logs to stderr in `log_format`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # py-evm logs every block at debug level; keep it to warnings unless asked for.
    logging.getLogger("eth").setLevel(max(logging.WARNING, root.level))


def event(logger: logging.Logger, message: str, **fields: Any) -> None:
    """Log `message` at info level with structured `fields`."""
    logger.info(message, extra={"fields": fields})
