"""Objects built from the settings: the one place that knows which setting goes where.

The daemon, the CLI and the web app all need an archive source, a target policy
for webhook URLs, template limits, the delivery configuration and the like, made
from the same settings keys with the same errors for a bad value. They get them
here, so that none of them imports another edge for it (the web app importing the
daemon made a cycle), and a new setting is wired in one place. Nothing here opens
a connection or starts a task: the callers own the lifecycles.

Only the edges (``feedbot.daemon``, ``feedbot.cli``, ``feedbot.web``) import this
module; it imports neither of them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from feedbot import __version__
from feedbot.archive.local import LocalArchiveSource
from feedbot.archive.source import ArchiveSource
from feedbot.clock import utc_now
from feedbot.errors import ConfigError
from feedbot.feeds.cache import FeedCache
from feedbot.ingest import Ingestor
from feedbot.logs import LogFormat
from feedbot.notify.deliver import DelivererSettings
from feedbot.notify.render_workers import TemplateLimits
from feedbot.notify.retry import RetryPolicy
from feedbot.notify.ssrf import GuardedConnector, TargetPolicy
from feedbot.notify.workers import DeliveryConfig
from feedbot.settings import Settings
from feedbot.store import Store, WriteResult


def make_source(settings: Settings, clock: Callable[[], datetime] = utc_now) -> ArchiveSource:
    """The archive named by ``archive.source``: a web server or a local folder."""
    archive = settings.archive
    if archive.is_url:
        # Imported here: a folder archive (the common case) needs no HTTP client.
        from feedbot.archive.http import HttpArchiveSource, archive_policy

        return HttpArchiveSource(
            base_url=archive.source,
            lookback_days=archive.lookback_days,
            backfill_days=archive.backfill_days,
            max_concurrency=archive.max_concurrency,
            timeout=archive.timeout,
            max_page_bytes=archive.max_page_bytes,
            batch_bytes=archive.batch_bytes,
            max_index_links=archive.max_index_links,
            policy=archive_policy(archive.source, allow_private=archive.allow_private),
            clock=clock,
        )
    return LocalArchiveSource(
        Path(archive.source),
        lookback_days=archive.lookback_days,
        max_page_bytes=archive.max_page_bytes,
        settle_ms=archive.settle_ms,
        clock=clock,
    )


def make_ingestor(
    settings: Settings,
    store: Store,
    source: ArchiveSource,
    on_stored: Callable[[WriteResult], None] | None = None,
) -> Ingestor:
    """The ingestor of ``source`` into ``store``, with the archive's page limits."""
    return Ingestor(
        store,
        source,
        backfill_days=settings.notify.backfill_days,
        limits=settings.archive.parse_limits,
        on_stored=on_stored,
    )


def target_policy(settings: Settings) -> TargetPolicy:
    """Which webhook targets are allowed (``notify.allow_private_targets``,
    ``notify.allow_cidrs``); a bad CIDR raises ``ConfigError`` naming its key."""
    try:
        return TargetPolicy.build(
            allow_private=settings.notify.allow_private_targets,
            allow_cidrs=settings.notify.allow_cidrs,
        )
    except ConfigError as exc:
        field = f"notify.{exc.field}" if exc.field else None
        raise ConfigError(f"notify.{exc}", field=field) from None


def target_connector(settings: Settings) -> GuardedConnector:
    """An aiohttp connector that connects only to targets :func:`target_policy`
    allows (call it with a running event loop, like ``TCPConnector``)."""
    return GuardedConnector(target_policy(settings))


def retry_policy(settings: Settings) -> RetryPolicy:
    """When failed deliveries are tried again (``notify.retry_schedule``) and when a
    failing subscription is disabled (``notify.disable_after``, days)."""
    return RetryPolicy(
        schedule=tuple(settings.notify.retry_schedule),
        disable_after=timedelta(days=settings.notify.disable_after),
    )


def make_feed_cache(settings: Settings, store: Store) -> FeedCache:
    """The rendered feeds of ``store`` (``feeds.page_size``, ``feeds.tombstone_days``)."""
    return FeedCache(
        store,
        settings.public_base_url,
        page_size=settings.feeds.page_size,
        tombstone_days=settings.feeds.tombstone_days,
        websub=settings.websub.enabled,
    )


def template_limits(settings: Settings) -> TemplateLimits:
    """The limits of operator templates (``notify.template_*``), for their checks
    and their renders alike."""
    return TemplateLimits.of(settings.notify)


def delivery_config(settings: Settings, *, log_level: str, log_format: LogFormat) -> DeliveryConfig:
    """What a deliverer, in this process or a worker process, is built from
    (``notify.*``; the lease from ``store.lease_seconds``; logging as the caller's)."""
    notify = settings.notify
    return DeliveryConfig(
        store_url=settings.store.url,
        base_url=settings.public_base_url,
        settings=DelivererSettings(
            max_in_flight=notify.max_in_flight,
            per_host=notify.per_host,
            per_subscription=notify.per_subscription,
            timeout=notify.timeout,
            lease=DeliveryConfig.lease_for(settings.store.lease_seconds, notify.timeout),
            user_agent=f"feedbot/{__version__}",
            template_failures=notify.template_failures,
        ),
        policy=retry_policy(settings),
        allow_private=notify.allow_private_targets,
        allow_cidrs=tuple(notify.allow_cidrs),
        log_level=log_level,
        log_format=log_format,
        grace=settings.server.shutdown_timeout,
        templates=template_limits(settings),
        apprise_workers=notify.apprise_workers,
    )
