"""Masking secrets in text that leaves the process: logs, ``feedbot config check``,
``/readyz``. Secrets are never passed there on purpose; this is the second line
of defence for a ``whsec_`` secret or a URL password that slips into a message.
:func:`redact_target_url` is the first line for a subscription's URL as given
in the config, before it has been checked (an Apprise URL holds its tokens)."""

from __future__ import annotations

import re

_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@/\s]+@")


def redact(text: str) -> str:
    """``text`` with ``whsec_`` secrets and URL passwords replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", _SECRET.sub("whsec_***", text))


def redact_target_url(url: str) -> str:
    """A subscription URL as the config gave it, fit to show: a webhook URL with
    any password hidden; any other (an Apprise URL, whose tokens may sit anywhere
    in it) as Apprise's privacy form."""
    if url.strip().lower().startswith(("http://", "https://")):
        return redact(url)
    # Imported here: only a config that names an Apprise URL pays for loading Apprise.
    from feedbot.notify.apprise_target import redact_apprise_url

    return redact_apprise_url(url)
