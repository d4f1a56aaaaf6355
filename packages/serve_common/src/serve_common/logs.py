"""JSON logs: one line per request on the `ai_inference.access` logger, JSON for the rest too."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

ACCESS_LOGGER = "ai_inference.access"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["msg"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def access_logger() -> logging.Logger:
    """The per-request logger, writing JSON lines to stderr (Ray collects replica stderr)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(os.environ.get("AI_ACCESS_LOG_LEVEL", "INFO"))
        logger.propagate = False
    return logger


def log_request(**fields: Any) -> None:
    logger = access_logger()
    if logger.isEnabledFor(logging.INFO):
        logger.info("request", extra={"fields": {"event": "request", **fields}})
