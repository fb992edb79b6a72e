"""HTTP semantics of the web app: conditional GET, gzip, caching headers, errors.

:func:`document_response` turns a rendered :class:`~feedbot.feeds.cache.Document`
into a response: 304 when the client's validator matches (``If-None-Match``,
else ``If-Modified-Since``, as RFC 9110 section 13.2.2 orders them), the
precompressed gzip body when ``Accept-Encoding`` allows it, and always ETag,
Last-Modified, ``Vary: Accept-Encoding`` and Cache-Control. HEAD comes for free:
aiohttp sends the headers of the GET, Content-Length included, and no body.

:func:`stream_response` is the same for a body written as it is read (the
OPML of every topic), never whole in memory, under a tag the caller works out
from what the body is made of.

:func:`error_middleware` is the one place an unexpected exception becomes a
response: a plain 500 whose body says nothing of the code, while the traceback
goes to the server's log. A store error answers the status
:data:`STORAGE_STATUS` gives its kind, here and in the admin API alike; a page
number past the end of a feed or list, a 404.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from email.utils import format_datetime
from functools import lru_cache

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from feedbot.errors import (
    ConflictError,
    NotFoundError,
    RequestError,
    StorageError,
    UnavailableError,
)
from feedbot.feeds import PageOutOfRange
from feedbot.feeds.cache import Document

log = logging.getLogger(__name__)

CACHE_CONTROL = "public, max-age=300"
# Nothing a feed or the OPML list holds may run or load anything if a browser
# renders it; HTML pages get their own, narrower policy.
DOCUMENT_CSP = "default-src 'none'; sandbox"
# An Atom or RSS feed a browser shows through /feed.xsl: browsers load an XSLT
# as a script, and its page links /site.css; nothing else may load. (A sandbox
# would make the document's origin opaque, and the stylesheet cross-origin.)
XML_FEED_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; base-uri 'none'"
XML_MEDIA_TYPE = "application/xml; charset=utf-8"
_FEED_MEDIA_RANGES = ("atom+xml", "rss+xml", "feed+json")


def wants_feed_as_page(accept: str) -> bool:
    """Whether ``Accept`` is a browser's: it asks for HTML and names no feed type.

    Browsers show ``application/atom+xml`` and ``application/rss+xml`` as plain
    text, without applying the document's ``<?xml-stylesheet?>``; as
    ``application/xml`` they apply it. Feed readers name the feed types, or send
    ``*/*``, and get the feed's own media type."""
    lowered = accept.lower()
    return "text/html" in lowered and not any(kind in lowered for kind in _FEED_MEDIA_RANGES)


@lru_cache(maxsize=256)
def accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (RFC 9110 section 12.5.3).

    ``gzip;q=0`` refuses it; ``*`` allows it unless gzip itself is refused.
    """
    wildcard: bool | None = None
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        allowed = _q(params) > 0
        if coding in ("gzip", "x-gzip"):
            return allowed
        if coding == "*":
            wildcard = allowed
    return bool(wildcard)


def _q(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 1.0


@lru_cache(maxsize=4096)
def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def is_not_modified(request: web.Request, document: Document) -> bool:
    """RFC 9110 section 13.1: does the client already hold this document?"""
    return _holds(request, (document.etag, document.gzip_etag), document.last_modified)


def _holds(request: web.Request, etags: tuple[str, str], last_modified: datetime | None) -> bool:
    """Whether the client holds the representation with either of ``etags`` (its
    identity and gzip tags), or one modified at ``last_modified``."""
    if request.method not in (hdrs.METH_GET, hdrs.METH_HEAD):
        return False
    if hdrs.IF_NONE_MATCH in request.headers:
        tags = request.if_none_match or ()
        # Weak comparison, as If-None-Match requires; either representation's tag
        # names the same content, so a cache holding the other coding revalidates.
        current = tuple(tag.strip('"') for tag in etags)
        return any(tag.value == "*" or tag.value in current for tag in tags)
    since = request.if_modified_since
    if since is None or last_modified is None:
        return False
    return last_modified.replace(microsecond=0) <= since


def gzip_etag(etag: str) -> str:
    """The tag of the gzip representation of the body tagged ``etag`` (a
    different byte sequence: RFC 9110 section 8.8.3)."""
    return etag[:-1] + '-gzip"'


def document_response(
    request: web.Request,
    document: Document,
    *,
    csp: str = DOCUMENT_CSP,
    cache_control: str = CACHE_CONTROL,
    media_type: str | None = None,
    vary: str = hdrs.ACCEPT_ENCODING,
    link: str | None = None,
) -> web.Response:
    """The response carrying ``document``, as ``media_type`` when given (else the
    document's own), with a ``Link`` header when given."""
    gzipped = accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
    headers = {
        hdrs.ETAG: document.gzip_etag if gzipped else document.etag,
        hdrs.CACHE_CONTROL: cache_control,
        hdrs.VARY: vary,
        hdrs.CONTENT_SECURITY_POLICY: csp,
        hdrs.X_CONTENT_TYPE_OPTIONS: "nosniff",
    }
    if document.last_modified is not None:
        headers[hdrs.LAST_MODIFIED] = http_date(document.last_modified)
    if link is not None:
        headers[hdrs.LINK] = link
    if is_not_modified(request, document):
        return web.Response(status=304, headers=headers)
    headers[hdrs.CONTENT_TYPE] = media_type or document.media_type
    if gzipped:
        headers[hdrs.CONTENT_ENCODING] = "gzip"
        return web.Response(body=document.gzip_body, headers=headers)
    return web.Response(body=document.body, headers=headers)


class StreamBroken(Exception):
    """A streamed body failed after its headers were sent: no other answer can be
    sent, so the exception leaves the handler and aiohttp closes the connection
    (the client sees the body cut short, never a whole-looking one)."""


async def stream_response(
    request: web.Request,
    chunks: Callable[[], AsyncIterator[bytes]],
    *,
    etag: str,
    media_type: str,
    csp: str = DOCUMENT_CSP,
    cache_control: str = CACHE_CONTROL,
) -> web.StreamResponse:
    """The response carrying a body too large to hold whole: written as
    ``chunks()`` yields it (chunked transfer coding, compressed on the way when
    ``Accept-Encoding`` allows gzip), under ``etag``, the strong tag of its
    identity bytes (the gzip representation's is :func:`gzip_etag`). 304 when
    the client holds it; HEAD sends the headers of GET, with no Content-Length
    (none is known before the body is written)."""
    gzipped = accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
    tags = (etag, gzip_etag(etag))
    headers = {
        hdrs.ETAG: tags[1] if gzipped else tags[0],
        hdrs.CACHE_CONTROL: cache_control,
        hdrs.VARY: hdrs.ACCEPT_ENCODING,
        hdrs.CONTENT_SECURITY_POLICY: csp,
        hdrs.X_CONTENT_TYPE_OPTIONS: "nosniff",
    }
    if _holds(request, tags, None):
        return web.Response(status=304, headers=headers)
    headers[hdrs.CONTENT_TYPE] = media_type
    response = web.StreamResponse(headers=headers)
    if gzipped:
        response.enable_compression(web.ContentCoding.gzip)
    response.enable_chunked_encoding()
    await response.prepare(request)
    if request.method == hdrs.METH_HEAD:
        return response
    try:
        async for chunk in chunks():
            await response.write(chunk)
    except ConnectionError:
        return response  # the client went away: nothing to tell anyone
    except Exception as exc:
        raise StreamBroken(f"{request.path}: cut short: {exc}") from exc
    await response.write_eof()
    return response


def not_found(text: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=text + "\n", headers={hdrs.CACHE_CONTROL: "no-store"})


def bad_request(error: RequestError) -> web.HTTPBadRequest:
    """The 400 of a request that cannot be taken: the parameter at fault and why."""
    return web.HTTPBadRequest(
        text=f"400 Bad Request: {error.field}: {error.reason}.\n",
        headers={hdrs.CACHE_CONTROL: "no-store"},
    )


# The HTTP status of each kind of store error; the most specific class listed
# wins. A plain StorageError is the store failing (a broken schema, say): 503.
STORAGE_STATUS: dict[type[StorageError], int] = {
    NotFoundError: 404,  # removed meanwhile, by another request or replica
    ConflictError: 409,
    UnavailableError: 503,
    StorageError: 503,
}


def storage_status(error: StorageError) -> int:
    """The HTTP status that answers ``error`` (see :data:`STORAGE_STATUS`)."""
    for kind in type(error).__mro__:
        if kind in STORAGE_STATUS:
            return STORAGE_STATUS[kind]
    raise AssertionError(f"{type(error).__name__} is a StorageError")  # pragma: no cover


def log_storage_error(request: web.Request, error: StorageError, status: int) -> None:
    """A store that failed is the operator's business (an error); a record another
    request removed or stored first is the client's (info)."""
    level = logging.ERROR if status >= 500 else logging.INFO
    log.log(level, "store error serving %s %s: %s", request.method, request.path, error)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (web.HTTPException, StreamBroken):
        raise
    except PageOutOfRange as exc:  # ?page= past the end of a feed or a list of events
        raise not_found(f"404 Not Found: {exc}.") from None
    except StorageError as exc:
        status = storage_status(exc)
        log_storage_error(request, exc, status)
        return _failure(status, _STORAGE_TEXT[status])
    except Exception:
        # The client learns nothing about the code; the log gets everything.
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return _failure(500, "500 Internal Server Error: the error has been logged.")


_STORAGE_TEXT = {
    404: "404 Not Found: it was removed meanwhile.",
    409: "409 Conflict: the store holds something else under its key.",
    503: "503 Service Unavailable: the event store is unavailable.",
}


def _failure(status: int, text: str) -> web.Response:
    headers = {hdrs.CACHE_CONTROL: "no-store"}
    if status == 503:
        headers[hdrs.RETRY_AFTER] = "30"
    return web.Response(status=status, text=text + "\n", headers=headers)
