"""The default clock. Everything in feedbot that reads the time takes a clock
argument defaulting to :func:`utc_now`, so tests wind time by hand instead of
sleeping."""

from __future__ import annotations

from datetime import UTC, datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # where Unix timestamps count from


def utc_now() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(UTC)
