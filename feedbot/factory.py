"""Objects built from the settings: the one place that knows which setting goes where.

The daemon, the CLI and the web app all need an archive source, a target policy
for webhook URLs, a retry policy and the like, made from the same settings keys
with the same errors for a bad value. They get them here, so that none of them
imports another edge for it (the web app importing the daemon made a cycle), and
a new setting is wired in one place. Nothing here opens a connection or starts a
task: the callers own the lifecycles.

Only the edges (``feedbot.daemon``, ``feedbot.cli``, ``feedbot.web``) import this
module; it imports neither of them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from feedbot.archive.local import LocalArchiveSource
from feedbot.archive.source import ArchiveSource
from feedbot.clock import utc_now
from feedbot.errors import ConfigError
from feedbot.ingest import Ingestor
from feedbot.notify.retry import RetryPolicy
from feedbot.notify.ssrf import GuardedConnector, TargetPolicy
from feedbot.settings import Settings
from feedbot.store import Store


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


def make_ingestor(settings: Settings, store: Store, source: ArchiveSource) -> Ingestor:
    """The ingestor of ``source`` into ``store``, with the archive's page limits."""
    return Ingestor(
        store,
        source,
        backfill_days=settings.notify.backfill_days,
        limits=settings.archive.parse_limits,
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
