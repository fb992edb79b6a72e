"""Inline source links in archive text: ``[URL (Name)]`` fragments made mentions.

The archive's summaries (and so the titles of related events) come from a wiki
whose external links read ``[URL (Name)]``; its scraper wrote them into the text
as they were, most with every ``/`` of the URL turned into ``-``
(``[https:--www.reuters.com-article-topNews-idUSISL18833720070710?feedType=RSS (Reuters)]``).
A reader should see the name, not the markup: :func:`clean_inline_links` turns each
such fragment into the mention ``(Name)`` and returns the URLs it can trust as
:class:`~feedbot.model.Source` objects.

What is a fragment: a bracket pair, balanced, whose text starts with ``http:`` or
``https:`` followed by ``//`` or ``--``, and which is not the text of a Markdown
link (``[text](url)``, left untouched with everything inside it). After the URL
(up to the first space) comes the label: ``(Name)``, a bare ``Name`` (also shown
as ``(Name)``), or nothing, when the mention is the URL's host without ``www.``
(``(reuters.com)``). A fragment with neither a label nor a URL this module trusts
is left as written.

Which URLs are trusted (the rule, README "The archive format"):

- ``http(s)://...`` as written, when it is made of URL characters (RFC 3986,
  ASCII) and names a host.
- ``http(s):--HOST-P1-P2...[?query][#fragment]``, the mangled form, becomes
  ``http(s)://HOST/P1/P2...[?query][#fragment]`` only when nothing in it could be
  a hyphen of the original: HOST is dot-separated letters and digits with a
  top-level label of letters only (a hyphen ends it), an optional port; the first
  path piece holds no dot (``al-jazeera.net-...`` would read as host ``al``); no
  piece is empty inside the path (``--``); no two neighbouring pieces are both
  lowercase words (``us-pakistan-mosque``: a slug's hyphens, not slashes); no
  GUID (``628DFB93-8F23-49C3-A56E-EBD006B0D607``). The query and fragment are
  kept verbatim. Anything else is not recovered: the mention stays, no source is
  made up.

The scan is linear: one pass over the brackets and one over the parentheses,
each with a stack, and only text that holds ``[http`` at all is scanned.
"""

from __future__ import annotations

import re
from itertools import pairwise
from urllib.parse import urlsplit

from feedbot.model import Source

# The cheap test that decides whether a text is scanned at all.
_MAYBE = re.compile(r"\[\s*https?:(?://|--)", re.IGNORECASE)
_FRAGMENT_START = re.compile(r"\s*https?:(?://|--)", re.IGNORECASE)
_BRACKETS = re.compile(r"[\[\]]")
_PARENS = re.compile(r"[()]")
# RFC 3986 characters, ASCII only; "[" and "]" (IPv6 literals) never occur here.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#@!$&'()*+,;=%]+")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_MANGLED = re.compile(
    r"(https?):--((?:[A-Za-z0-9]+\.)+[A-Za-z]{2,63})(:[0-9]{1,5})?(?:-([^?#]*))?([?#].*)?",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z]+")
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


def clean_inline_links(text: str) -> tuple[str, tuple[Source, ...]]:
    """``text`` with every inline link fragment made its mention, and the sources
    of the fragments whose URL is trusted, in order, one per URL."""
    if _MAYBE.search(text) is None:
        return text, ()
    pieces: list[str] = []
    sources: dict[str, Source] = {}
    done = 0
    for start, end in _fragments(text):
        found = _mention(text[start + 1 : end])
        if found is None:
            continue
        mention, source = found
        pieces.append(text[done:start])
        pieces.append(mention)
        done = end + 1
        if source is not None:
            sources.setdefault(source.url, source)
    if not pieces:
        return text, ()
    pieces.append(text[done:])
    return "".join(pieces), tuple(sources.values())


def recover_url(url: str) -> str | None:
    """The URL a fragment names, when it can be trusted (the module's rule), else ``None``."""
    if url.lower().startswith(("http://", "https://")):  # as written
        return url if _valid(url) else None
    mangled = _MANGLED.fullmatch(url)
    if mangled is None:
        return None
    scheme, host, port, path, rest = mangled.groups()
    pieces = path.split("-") if path is not None else []
    if pieces and "." in pieces[0]:
        return None
    if any(not piece for piece in pieces[:-1]):
        return None
    if any(_WORD.fullmatch(a) and _WORD.fullmatch(b) for a, b in pairwise(pieces)):
        return None
    if path is not None and _GUID.search(path):
        return None
    recovered = f"{scheme.lower()}://{host}{port or ''}"
    if pieces:
        recovered += "/" + "/".join(pieces)
    recovered += rest or ""
    return recovered if _valid(recovered) else None


def _valid(url: str) -> bool:
    if _URL_CHARS.fullmatch(url) is None:
        return False
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # .port raises for a port out of range
    except ValueError:
        return False
    return host is not None and _HOST.fullmatch(host) is not None


def _fragments(text: str) -> list[tuple[int, int]]:
    """The (``[`` index, ``]`` index) of every fragment that is not inside another
    one or inside a Markdown link."""
    closing_paren = _closings(text, _PARENS, "(")
    spans: list[tuple[int, int, bool]] = []  # start, end, is a fragment
    opened: list[int] = []
    holds_link: set[int] = set()  # the open brackets with a Markdown link inside
    for match in _BRACKETS.finditer(text):
        if match.group() == "[":
            opened.append(match.start())
            continue
        if not opened:
            continue
        start, end = opened.pop(), match.start()
        if text.startswith("(", end + 1):
            # A Markdown link's text (and its target, when that closes): untouched,
            # and so is a bracket around it, which cannot be a fragment.
            spans.append((start, closing_paren.get(end + 1, end), False))
            if opened:
                holds_link.add(opened[-1])
        elif start in holds_link:
            if opened:
                holds_link.add(opened[-1])
        elif _FRAGMENT_START.match(text, start + 1):
            spans.append((start, end, True))
    spans.sort()
    found: list[tuple[int, int]] = []
    covered = -1
    for start, end, fragment in spans:
        if start <= covered:
            continue  # inside a link or a fragment already taken
        covered = end
        if fragment:
            found.append((start, end))
    return found


def _closings(text: str, pattern: re.Pattern[str], opening: str) -> dict[int, int]:
    """Where each balanced opening character of ``pattern`` closes."""
    closing: dict[int, int] = {}
    opened: list[int] = []
    for match in pattern.finditer(text):
        if match.group() == opening:
            opened.append(match.start())
        elif opened:
            closing[opened.pop()] = match.start()
    return closing


def _mention(inner: str) -> tuple[str, Source | None] | None:
    """The mention a fragment's inner text becomes and the source it names, or
    ``None`` when it is to stay as written."""
    parts = inner.split(maxsplit=1)
    url, label = parts[0], parts[1] if len(parts) > 1 else ""
    recovered = recover_url(url)
    name = _name(label)
    if not name:
        if recovered is None:
            return None
        host = urlsplit(recovered).hostname or ""
        name = host.removeprefix("www.")
    source = Source(name=name, url=recovered) if recovered is not None else None
    return f"({name})", source


def _name(label: str) -> str:
    """A label's name: ``(Name)`` unwrapped when its parentheses are one pair,
    whitespace collapsed."""
    label = label.strip()
    if label.startswith("(") and _closings(label, _PARENS, "(").get(0) == len(label) - 1:
        label = label[1:-1]
    return " ".join(label.split())
