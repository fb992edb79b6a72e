"""Standard Webhooks headers and secrets: what makes an alert verifiable.

Owns the ``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature`` headers
of README: "Webhooks" and the ``whsec_`` secrets they are signed with. The signature
is made by the ``standardwebhooks`` library itself, so a receiver using it
verifies our headers unchanged.

For the deliverer: ``msg_id`` stays the same for every attempt of one delivery
(receivers deduplicate on it), but ``timestamp`` should be the attempt's own
time, with a fresh signature: receivers refuse a timestamp more than five
minutes old, so re-sending the first attempt's headers an hour later would fail.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import secrets
from datetime import UTC, datetime
from functools import lru_cache

from standardwebhooks import Webhook

from feedbot.errors import ConfigError

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_MSG_ID = re.compile(r"[\x21-\x7e]{1,256}")  # visible ASCII: a header value, no spaces


def validate_secret(value: str) -> str:
    """``value`` stripped, if it is ``whsec_`` plus the standard base64 of 24..64 bytes.

    Otherwise a ``ConfigError`` naming the field ``secret`` -- and never its value.
    Checked strictly because the library is lenient: it decodes with
    ``validate=False``, silently dropping characters outside the alphabet (the
    ``-`` and ``_`` of URL-safe base64, say), which would sign with another key.
    """
    secret = value.strip()
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigError(f"secret: must start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    if not _BASE64.fullmatch(encoded):
        raise ConfigError(
            f"secret: must be {SECRET_PREFIX!r} followed by standard base64 (A-Z, a-z, 0-9, +, /)"
        )
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ConfigError("secret: the part after 'whsec_' is not valid base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ConfigError(
            f"secret: must encode {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {len(key)}"
        )
    return secret


def new_secret(nbytes: int = 32) -> str:
    """A fresh random ``whsec_`` secret of ``nbytes`` bytes."""
    if not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise ValueError(f"nbytes must be {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES}")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def webhook_headers(
    msg_id: str, timestamp: datetime, body: bytes, secret: str | None
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt to send ``body``.

    ``webhook-timestamp`` is ``timestamp`` in whole Unix seconds; with a
    ``secret`` (``whsec_`` form, see :func:`validate_secret`), ``webhook-signature``
    is ``v1,`` + base64 HMAC-SHA256 over ``msg_id.timestamp.body``.
    """
    if not _MSG_ID.fullmatch(msg_id):
        raise ValueError("msg_id must be 1 to 256 visible ASCII characters")
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    # The library does timestamp.replace(tzinfo=utc): hand it UTC, whole seconds.
    moment = datetime.fromtimestamp(math.floor(timestamp.timestamp()), tz=UTC)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(moment.timestamp()))}
    if secret is not None:
        headers["webhook-signature"] = _sign(secret, msg_id, moment, body)
    return headers


def _sign(secret: str, msg_id: str, moment: datetime, body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # The library signs text; the scheme signs bytes. Same HMAC, raw bytes.
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")
        signed = f"{msg_id}.{int(moment.timestamp())}.".encode() + body
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        return "v1," + base64.b64encode(digest).decode("ascii")
    signature: str = _webhook(secret).sign(msg_id, moment, text)
    return signature


@lru_cache(maxsize=1024)
def _webhook(secret: str) -> Webhook:
    """The library's signer for ``secret``, made once (it decodes the key)."""
    return Webhook(secret)
