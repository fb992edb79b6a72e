"""Logging set-up: one JSON object per line (the default when stderr is not a
terminal), or readable text.

Log calls pass identifiers as ``extra`` (``event_id``, ``subscription_id``,
``delivery_id``, ``path``), which the JSON form carries as fields so a log
pipeline can select on them. Secrets are never passed to a log call; the
formatter additionally masks anything shaped like a ``whsec_`` secret or a URL
password, as a second line of defence.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

from feedbot.redact import redact

LogFormat = Literal["auto", "json", "text"]

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class _MaskingJson(JsonFormatter):
    def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
        return {k: redact(v) if isinstance(v, str) else v for k, v in log_record.items()}


class _MaskingText(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if extras:
            text += "  " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))
        return redact(text)


_current: tuple[str, LogFormat] = ("info", "auto")


def current_logging() -> tuple[str, LogFormat]:
    """The level and format of the last :func:`setup_logging`, for child processes."""
    return _current


def setup_logging(level: str = "info", log_format: LogFormat = "auto") -> None:
    global _current
    if log_format == "auto":
        log_format = "text" if sys.stderr.isatty() else "json"
    _current = (level, log_format)
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(
            _MaskingJson(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                datefmt="%Y-%m-%dT%H:%M:%S%z",
            )
        )
    else:
        handler.setFormatter(_MaskingText("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    # aiohttp's access log is one line per request: useful, but not at info by default.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
