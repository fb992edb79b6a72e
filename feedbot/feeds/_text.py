"""Making untrusted archive text safe to put into XML (and JSON) documents.

XML 1.0 forbids most C0 controls, lone surrogates and U+FFFE/U+FFFF; lxml refuses
them and ``xml.etree`` writes them out as broken XML. C1 controls, DEL and the
U+FDD0..U+FDEF non-characters are allowed but discouraged, and no reader shows
them usefully. Every display string passes through here before any writer sees it.
"""

from __future__ import annotations

import re

from feedbot.model import Event

_XML_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]"
)


def xml_safe(text: str) -> str:
    """``text`` without the characters XML forbids or discourages."""
    return _XML_UNSAFE.sub("", text)


def safe_event(event: Event) -> Event:
    """A copy of ``event`` whose display strings are XML-safe.

    The id is left alone: it only ever reaches a document percent-encoded (see
    :mod:`feedbot.feeds.urls`), which keeps two ids that differ only in a control
    character apart.
    """
    return event.map_text(xml_safe)
