"""The aiohttp application: the routes of README: "Using it" and the health check.

=========================================  ======================================
``/feeds/all.{atom,rss,json}[?page=N]``    every event
``/feeds/topics/<slug>.{atom,rss,json}``   one topic's events (``?page=N`` too)
``/feeds/search.{atom,rss,json}?q=``       the events holding every word
                                           (``&topic=`` any of, ``&page=N``)
``/[?page=N]``                             the latest events (HTML)
``/topics[?q=..][&page=N]``                HTML topic list (filtered by words)
``/topics/<slug>[?page=N]``                one topic's events (HTML)
``/search?q=``                             search results (HTML)
``/topics.opml``                           OPML of every topic feed (streamed)
``/events/<id>``                           HTML page of one event (an alias: 301 to the
                                           kept id; a removed event: 410 Gone)
``/site.css``, ``/feed.xsl``               the pages' style, the feeds' XSLT
``/healthz``, ``/readyz``, ``/metrics``    liveness, readiness, Prometheus (:mod:`.health`)
``/api/v1/...``                            the admin API, when ``admin.token`` is set
                                           (:mod:`.admin`)
=========================================  ======================================

A search that cannot be run (empty, too long, a topic that is not a slug) is a
400 whose body says why: the search form again on ``/search``, a line of text on
the feeds.

Handlers only parse and validate the request and pick a document; rendering and
caching live in :mod:`feedbot.feeds.cache`, HTTP semantics in :mod:`.http`. A
slug is checked against the slug grammar before anything else, so no request
path reaches the store or the file system unvalidated. Every feed, OPML and HTML
request is counted in ``feedbot_feed_requests_total`` by format and status.

Links in documents start with ``server.base_url``; when it is unset, with the
scheme and ``Host`` of the request (:func:`~feedbot.feeds.urls.base_from_host`),
or, for a missing or malformed ``Host``, with the address the server listens on.
"""

from __future__ import annotations

import asyncio
import base64
import difflib
import hashlib
import re
from collections import OrderedDict
from collections.abc import Sequence

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from feedbot import __version__
from feedbot.errors import FeedbotError
from feedbot.factory import target_policy
from feedbot.feeds import FeedFormat, event_url, feed_url
from feedbot.feeds.cache import Document, FeedCache, UnknownTopic
from feedbot.feeds.documents import (
    HTML_MEDIA_TYPE,
    load_feed_page,
    load_topics_page,
    opml_chunks,
    opml_etag,
    resolve_related,
)
from feedbot.feeds.pages import (
    filter_script,
    render_event_page,
    render_home_page,
    render_removed_page,
    render_search_refusal,
    render_topics_page,
)
from feedbot.feeds.urls import (
    OPML_MEDIA_TYPE,
    SITE_CSS_PATH,
    STYLESHEET_PATH,
    base_from_host,
    hub_url,
    search_feed_url,
    topics_url,
)
from feedbot.metrics import Metrics
from feedbot.model import MAX_SLUG_CHARS
from feedbot.search import BadQuery, SearchQuery, TopicFilter
from feedbot.settings import Settings
from feedbot.store import Moved, Removed, Store, TopicCount
from feedbot.web import health
from feedbot.web.admin import setup_admin
from feedbot.web.http import (
    CACHE_CONTROL,
    XML_FEED_CSP,
    XML_MEDIA_TYPE,
    bad_request,
    document_response,
    error_middleware,
    not_found,
    stream_response,
    wants_feed_as_page,
)
from feedbot.web.websub import WebSubHub
from feedbot.websub import HUB_PATH, link_header

SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_EVENT_ID = 1024
_PAGE = re.compile(r"[0-9]{1,9}")
_SUGGESTIONS = 5
_NAMES_CHUNK = 5000  # topics read at a time for the closest ones
_SUGGESTIONS_KEPT = 256  # unknown slugs whose closest topics are kept
_REFERRERS = 100  # "refer to this" on an event page, at most
_EXTENSIONS = frozenset(fmt.value for fmt in FeedFormat)

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
CACHE = web.AppKey("cache", FeedCache)
METRICS = web.AppKey("metrics", Metrics)
HUB = web.AppKey("websub_hub", WebSubHub)


def is_slug(text: str) -> bool:
    return len(text) <= MAX_SLUG_CHARS and SLUG.fullmatch(text) is not None


def create_app(
    settings: Settings,
    store: Store,
    cache: FeedCache,
    *,
    metrics: Metrics | None = None,
    readiness: health.ReadinessProbe | None = None,
) -> web.Application:
    """The application; links in documents use ``cache.base_url`` when
    ``server.base_url`` is set, else each request's Host. Without ``metrics``
    (an app built on its own, in tests) it counts into its own."""
    metrics = metrics if metrics is not None else Metrics()
    app = web.Application(middlewares=[count_feed_requests(metrics), error_middleware])
    app[SETTINGS] = settings
    app[STORE] = store
    app[CACHE] = cache
    app[METRICS] = metrics
    routes = _Routes(
        store, cache, from_host=not settings.server.base_url, websub=settings.websub.enabled
    )
    app.router.add_get("/feeds/all.{fmt:atom|rss|json}", routes.all_feed)
    app.router.add_get("/feeds/search.{fmt:atom|rss|json}", routes.search_feed)
    app.router.add_get("/feeds/topics/{file}", routes.topic_feed)
    app.router.add_get("/", routes.home)
    app.router.add_get("/topics", routes.topics)
    app.router.add_get("/topics/{slug}", routes.topic_page)
    app.router.add_get("/search", routes.search_page)
    app.router.add_get("/topics.opml", routes.opml)
    app.router.add_get("/events/{id:.+}", routes.event)
    app.router.add_get(SITE_CSS_PATH, routes.site_css)
    app.router.add_get(STYLESHEET_PATH, routes.feed_stylesheet)
    if settings.websub.enabled:
        hub = WebSubHub(
            settings.websub,
            store,
            target_policy(settings),
            base_of=routes.base,
            user_agent=f"feedbot/{__version__}",
        )
        app.router.add_post(HUB_PATH, hub.handle)
        app[HUB] = hub

        async def close_hub(_app: web.Application) -> None:
            await hub.close()

        app.on_cleanup.append(close_hub)
    health.add_routes(app, settings, store, metrics, readiness)
    setup_admin(app, settings, store)
    return app


def feed_format(path: str) -> str | None:
    """The ``format`` label of a request for ``path``; None when it is not a
    feed, OPML or HTML request. A path under /feeds/ that names no feed format
    (a 404) is ``other``, so the label set stays small whatever clients ask."""
    if path.startswith("/feeds/"):
        extension = path.rpartition(".")[2]
        return extension if extension in _EXTENSIONS else "other"
    if path == "/topics.opml":
        return "opml"
    if path in ("/", "/topics", "/search") or path.startswith(("/events/", "/topics/")):
        return "html"
    return None


def count_feed_requests(metrics: Metrics) -> Middleware:
    """Counts each feed, OPML and HTML request by format and final status."""

    @web.middleware
    async def counted(request: web.Request, handler: Handler) -> web.StreamResponse:
        fmt = feed_format(request.path)
        if fmt is None:
            return await handler(request)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.feed_requests.labels(fmt, str(exc.status)).inc()
            raise
        metrics.feed_requests.labels(fmt, str(response.status)).inc()
        return response

    return counted


def _script_source(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


class _Routes:
    def __init__(self, store: Store, cache: FeedCache, *, from_host: bool, websub: bool) -> None:
        self.store = store
        self.cache = cache
        self.from_host = from_host
        self.websub = websub
        # One search for the topics closest to an unknown slug at a time: each
        # reads and compares every topic, and a flood of 404s must not take the
        # whole machine.
        self._closest = asyncio.Semaphore(1)
        # The closest topics of the last unknown slugs asked for, with the topic
        # list's version they were found in: a reader polling a feed that never
        # existed costs one read of the version, not a search, while the list
        # is as it was.
        self._suggested: OrderedDict[str, tuple[int, list[TopicCount]]] = OrderedDict()
        # Archive text is escaped by the templates; this policy is the second
        # line: the one script allowed is the topic filter, by its hash; style
        # comes from /site.css alone; forms only search this site.
        self.html_csp = (
            f"default-src 'none'; script-src {_script_source(filter_script())}; "
            "style-src 'self'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'"
        )

    async def all_feed(self, request: web.Request) -> web.StreamResponse:
        return await self._feed(request, None, FeedFormat(request.match_info["fmt"]))

    async def topic_feed(self, request: web.Request) -> web.StreamResponse:
        slug, dot, extension = request.match_info["file"].rpartition(".")
        if not dot or extension not in _EXTENSIONS:
            raise not_found("404 Not Found: feeds end in .atom, .rss or .json.")
        self._check_slug(request, slug)
        return await self._feed(request, slug, FeedFormat(extension))

    def _check_slug(self, request: web.Request, slug: str) -> None:
        """404 for a path that names no topic slug, before the store is asked."""
        if not is_slug(slug):
            raise not_found(
                "404 Not Found: not a topic slug (lowercase letters and digits, "
                f"joined by single hyphens). Every topic: {self._topics_url(request)}"
            )

    async def search_feed(self, request: web.Request) -> web.StreamResponse:
        fmt = FeedFormat(request.match_info["fmt"])
        try:
            query = _search_query(request)
        except BadQuery as exc:
            raise bad_request(exc) from None
        page = _page(request)
        canonical = search_feed_url("", query, fmt, page)
        if request.raw_path != canonical:
            # One query, one URL: the one its feed names as "self", and readers keep.
            raise web.HTTPMovedPermanently(self.base(request) + canonical)
        document = await self.cache.search_feed(query, fmt, page, base_url=self.base(request))
        return self._feed_response(request, document, fmt, canonical)

    async def _feed(
        self, request: web.Request, slug: str | None, fmt: FeedFormat
    ) -> web.StreamResponse:
        page = _page(request)
        try:
            document = await self.cache.feed(slug, fmt, page, base_url=self.base(request))
        except UnknownTopic:
            assert slug is not None
            raise not_found(await self._unknown_topic(request, slug)) from None
        return self._feed_response(request, document, fmt, feed_url("", slug, fmt, page))

    def _feed_response(
        self, request: web.Request, document: Document, fmt: FeedFormat, path: str
    ) -> web.StreamResponse:
        """A feed (at ``path`` under the base): it names the WebSub hub and itself
        in a ``Link`` header; Atom and RSS may be shown through their XSLT, and to
        a browser go as ``application/xml`` (:func:`~feedbot.web.http.wants_feed_as_page`)."""
        links = None
        if self.websub:
            base = self.base(request)
            links = link_header(hub_url(base), base + path)
        if fmt is FeedFormat.JSON:
            return document_response(request, document, link=links)
        as_page = wants_feed_as_page(request.headers.get(hdrs.ACCEPT, ""))
        return document_response(
            request,
            document,
            csp=XML_FEED_CSP,
            media_type=XML_MEDIA_TYPE if as_page else None,
            vary=f"{hdrs.ACCEPT}, {hdrs.ACCEPT_ENCODING}",
            link=links,
        )

    def _html(self, status: int, body: bytes, media_type: str, cache_control: str) -> web.Response:
        """An HTML answer that is not a cached document (a refusal, a removal),
        under the pages' policy."""
        return web.Response(
            status=status,
            body=body,
            headers={
                hdrs.CONTENT_TYPE: media_type,
                hdrs.CACHE_CONTROL: cache_control,
                hdrs.CONTENT_SECURITY_POLICY: self.html_csp,
                hdrs.X_CONTENT_TYPE_OPTIONS: "nosniff",
            },
        )

    def base(self, request: web.Request) -> str:
        """The base URL of the links in the answer to ``request``."""
        if self.from_host:
            derived = base_from_host(request.headers.get(hdrs.HOST, ""), request.scheme)
            if derived is not None:
                return derived
        return self.cache.base_url

    async def _unknown_topic(self, request: web.Request, slug: str) -> str:
        lines = [f'404 Not Found: there is no topic "{slug}".']
        close = await self._closest_topics(slug)
        base = self.base(request)
        if close:
            lines.append("Closest topics:")
            lines += [
                f"  {c.topic.slug}  ({c.topic.name}, {c.events} events)  "
                f"{feed_url(base, c.topic.slug)}"
                for c in close
            ]
        lines.append(f"Every topic: {topics_url(base)}")
        return "\n".join(lines)

    async def _closest_topics(self, slug: str) -> list[TopicCount]:
        async with self._closest:
            version = await self.store.topic_list.version()
            known = self._suggested.get(slug)
            if known is not None and known[0] == version:
                self._suggested.move_to_end(slug)
                return known[1]
            # Every topic is read (no list is kept for a 404), a chunk per short
            # read, and compared off the event loop: about a second at 87,000.
            counts = [
                c async for chunk in self.store.topic_list.chunks(_NAMES_CHUNK) for c in chunk
            ]
            close = await asyncio.to_thread(closest_topics, slug, counts)
            self._suggested[slug] = (version, close)
            while len(self._suggested) > _SUGGESTIONS_KEPT:
                self._suggested.popitem(last=False)
            return close

    def _topics_url(self, request: web.Request) -> str:
        return topics_url(self.base(request))

    async def _archive_notice(self) -> str | None:
        try:
            return health.archive_notice(await self.store.last_poll())
        except FeedbotError:
            return None  # the store's trouble is /readyz's to tell

    async def home(self, request: web.Request) -> web.StreamResponse:
        page, base = _page(request), self.base(request)
        notice = await self._archive_notice()
        if notice is None:
            document = await self.cache.home_page(page, base_url=base)
        else:
            # Not cached: the notice goes when the archive is back.
            loaded = await load_feed_page(
                self.store, base, None, page, page_size=self.cache.page_size, tombstone_days=0
            )
            document = render_home_page(loaded, notice)
        return document_response(request, document, csp=self.html_csp)

    async def topic_page(self, request: web.Request) -> web.StreamResponse:
        slug = request.match_info["slug"]
        self._check_slug(request, slug)
        page = _page(request)
        try:
            document = await self.cache.topic_page(slug, page, base_url=self.base(request))
        except UnknownTopic:
            raise not_found(await self._unknown_topic(request, slug)) from None
        return document_response(request, document, csp=self.html_csp)

    async def search_page(self, request: web.Request) -> web.StreamResponse:
        try:
            query = _search_query(request)
        except BadQuery as exc:
            refusal = render_search_refusal(
                self.base(request), request.query.get("q", ""), exc.reason
            )
            return self._html(400, refusal, HTML_MEDIA_TYPE, "no-store")
        page = _page(request)
        document = await self.cache.search_page(query, page, base_url=self.base(request))
        return document_response(request, document, csp=self.html_csp)

    async def site_css(self, request: web.Request) -> web.StreamResponse:
        return document_response(request, await self.cache.site_css())

    async def feed_stylesheet(self, request: web.Request) -> web.StreamResponse:
        document = await self.cache.feed_stylesheet(base_url=self.base(request))
        return document_response(request, document)

    async def topics(self, request: web.Request) -> web.StreamResponse:
        try:
            query = TopicFilter.parse(request.query.get("q", ""))
        except BadQuery as exc:
            raise bad_request(exc) from None
        page, base = _page(request), self.base(request)
        notice = await self._archive_notice()
        if notice is None:
            document = await self.cache.topics_page(page, query, base_url=base)
        else:
            # Not cached: the notice goes when the archive is back.
            document = render_topics_page(
                await load_topics_page(self.store, base, page, query), notice
            )
        return document_response(request, document, csp=self.html_csp)

    async def opml(self, request: web.Request) -> web.StreamResponse:
        # Streamed as its topics are read: at 87,000 topics it is 20 MB, which
        # no process should hold (nor render on the event loop) at once.
        base = self.base(request)
        return await stream_response(
            request,
            lambda: opml_chunks(self.store, base),
            etag=await opml_etag(self.store, base),
            media_type=OPML_MEDIA_TYPE,
        )

    async def event(self, request: web.Request) -> web.StreamResponse:
        event_id = request.match_info["id"]
        found = None
        if len(event_id) <= MAX_EVENT_ID:
            found = await self.store.lookup_event(event_id)
        if found is None:
            raise not_found(
                f"404 Not Found: no such event. Every topic: {self._topics_url(request)}"
            )
        if isinstance(found, Moved):
            # A reworded page's other path: the event lives under its first id.
            raise web.HTTPMovedPermanently(event_url(self.base(request), found.kept_id))
        if isinstance(found, Removed):
            removed = render_removed_page(found, self.base(request))
            # A page that comes back revives the event: cached, not for ever.
            return self._html(410, removed.body, removed.media_type, CACHE_CONTROL)
        (stored,) = await resolve_related(self.store, [found])
        referrers = await self.store.referring_events(stored.event.id, limit=_REFERRERS)
        document = render_event_page(stored, self.base(request), referrers)
        return document_response(request, document, csp=self.html_csp)


def _page(request: web.Request) -> int:
    raw_page = request.query.get("page")
    if raw_page is None:
        return 1
    if _PAGE.fullmatch(raw_page):
        return int(raw_page)
    raise web.HTTPBadRequest(text="400 Bad Request: page must be a positive integer.\n")


def _search_query(request: web.Request) -> SearchQuery:
    return SearchQuery.parse(request.query.get("q", ""), request.query.getall("topic", []))


def closest_topics(slug: str, counts: Sequence[TopicCount]) -> list[TopicCount]:
    """The topics whose slug or name is most like ``slug``, best first."""
    by_slug = {c.topic.slug: c for c in counts}
    by_name = {c.topic.name.lower(): c for c in counts}
    found: dict[str, TopicCount] = {}
    for text, index in ((slug, by_slug), (slug.replace("-", " "), by_name)):
        for match in difflib.get_close_matches(text, index, n=_SUGGESTIONS, cutoff=0.6):
            found.setdefault(index[match].topic.slug, index[match])
    return list(found.values())[:_SUGGESTIONS]
