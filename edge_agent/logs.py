"""Logging: plain lines for the journal (no second timestamp), JSON for collectors."""
from __future__ import annotations

import logging
import os
import sys

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def setup(fmt: str = "plain", level: str = "INFO", stream=None) -> None:
    """Configure the root logger once.  Under systemd (JOURNAL_STREAM set) plain lines carry no time."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # libraries log per request at INFO/DEBUG; the agent logs state changes itself
    for noisy in ("pymodbus", "asyncua", "aiomqtt"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL if level.upper() != "DEBUG" else logging.DEBUG)
