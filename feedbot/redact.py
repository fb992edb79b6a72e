"""Masking secrets in text that leaves the process: logs, ``feedbot config check``,
``/readyz``. Secrets are never passed there on purpose; this is the second line
of defence for a ``whsec_`` secret or a URL password that slips into a message."""

from __future__ import annotations

import re

_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@/\s]+@")


def redact(text: str) -> str:
    """``text`` with ``whsec_`` secrets and URL passwords replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", _SECRET.sub("whsec_***", text))
