"""Digest schedules: when a digest subscription's periods start and end.

Owns the meaning of a subscription's ``digest``, ``digest_at`` and ``timezone``
keys (:class:`feedbot.model.Subscription`): parsing and refusing them
(:meth:`DigestSchedule.parse`, a :class:`~feedbot.errors.ConfigError` naming the
field), their normalised form for the store (:meth:`DigestSchedule.values`), and
the period that holds a moment (:meth:`DigestSchedule.period_containing`). Pure:
no I/O, no clock; every datetime in and out is timezone-aware, and out is UTC.

The kinds:

- a number of seconds (10 up to 31 days' worth): back-to-back intervals counted
  from the Unix epoch, so every replica cuts the same periods. ``digest_at`` is
  refused there (it would mean nothing); ``timezone`` is checked and kept but
  has no effect.
- ``hourly``: a period ends each time the zone's clock shows ``:MM:00``, where MM
  is ``digest_at``'s minute (its hour is ignored; default ``:00``). In a zone of
  whole-hour offsets that is every hour at a fixed UTC minute; in Asia/Kolkata
  (+05:30) ``:00`` local is ``:30`` UTC. A repeated hour (clocks going back)
  ends twice, a skipped one not at all, so every period is one hour except
  around an offset change that is not whole hours (Australia/Lord_Howe).
- ``daily``: a period ends each day at ``digest_at`` (default 08:00) on the
  zone's clock (default UTC), so it is 23 or 25 hours long across a DST change.
- ``weekly``: the same, on Mondays only.

A ``digest_at`` the clock skips (02:30 on a spring-forward night) or shows twice
(02:30 on a fall-back night) resolves as :mod:`zoneinfo` resolves a wall time
with ``fold=0`` (PEP 495, and RFC 5545 for calendars): read with the offset in
force before the change. A skipped time is then pushed forward by the size of
the gap (02:30 CET is 03:30 CEST, the first valid moment the gap's length after
it), and a repeated one is its first occurrence. Either way the day keeps its
23, 24 or 25 hours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from feedbot.clock import EPOCH
from feedbot.errors import ConfigError

MIN_SECONDS = 10  # short periods are for trying digests out (and for tests)
MAX_SECONDS = 31 * 24 * 3600
DEFAULT_AT = time(8, 0)  # daily and weekly digests
DEFAULT_TIMEZONE = "UTC"

_AT = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_DIGITS = re.compile(r"[0-9]+")
# How far (in wall-clock time) around a moment boundaries are looked for. The
# largest jumps of a zone's clock in the tz database are a day (Pacific/Apia
# skipping 2011-12-30, Alaska going back a day in 1867), so these always hold
# the boundaries on either side of the moment.
_HOURLY_RADIUS = 50  # hours
_DAILY_RADIUS = 3  # days
_WEEKLY_RADIUS = 2  # weeks


class DigestKind(StrEnum):
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    INTERVAL = "interval"  # every ``seconds`` seconds, epoch-aligned


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    """A parsed digest schedule; build it with :meth:`parse`.

    ``seconds`` is an interval digest's length (``None`` for the other kinds);
    ``at`` the time of day periods end (hourly: only its minute counts; ``None``
    for an interval digest); ``timezone`` the IANA name of the zone whose clock
    that is (``None`` only for an interval digest given none).
    """

    kind: DigestKind
    seconds: int | None = None
    at: time | None = None
    timezone: str | None = None

    @classmethod
    def parse(
        cls, digest: str | int | None, digest_at: str | None, timezone: str | None
    ) -> DigestSchedule | None:
        """The schedule of a subscription's ``digest``, ``digest_at`` and
        ``timezone`` keys, or ``None`` when ``digest`` is absent or blank (an
        alert per event). A wrong value, or ``digest_at``/``timezone`` without a
        digest, is a :class:`ConfigError` naming the field."""
        at_text = _blank_to_none(digest_at)
        zone_text = _blank_to_none(timezone)
        if digest is None or (isinstance(digest, str) and not digest.strip()):
            if at_text is not None:
                raise ConfigError.about("digest_at", "given without digest")
            if zone_text is not None:
                raise ConfigError.about("timezone", "given without digest")
            return None
        kind, seconds = _parse_digest(digest)
        zone = None if zone_text is None else _parse_timezone(zone_text)
        if kind is DigestKind.INTERVAL:
            if at_text is not None:
                raise ConfigError.about(
                    "digest_at",
                    f"a digest every {seconds} seconds runs on fixed intervals from the"
                    " Unix epoch; digest_at is for hourly, daily and weekly digests",
                )
            return cls(kind, seconds=seconds, timezone=zone)
        at = DEFAULT_AT if kind is not DigestKind.HOURLY else time(0)
        if at_text is not None:
            at = _parse_at(at_text)
        if kind is DigestKind.HOURLY:
            at = time(0, at.minute)  # the minute past each hour
        return cls(kind, at=at, timezone=zone or DEFAULT_TIMEZONE)

    def values(self) -> tuple[str, str | None, str | None]:
        """``(digest, digest_at, timezone)`` normalised, as the store keeps them:
        ``parse(*schedule.values()) == schedule``. Defaults are written out."""
        at = None if self.at is None else self.at.strftime("%H:%M")
        if self.kind is DigestKind.INTERVAL:
            return str(self.seconds), at, self.timezone
        return self.kind.value, at, self.timezone

    def __str__(self) -> str:
        if self.kind is DigestKind.INTERVAL:
            return f"every {self.seconds} seconds"
        assert self.at is not None
        if self.kind is DigestKind.HOURLY:
            return f"hourly at :{self.at.minute:02d} ({self.timezone})"
        day = "daily" if self.kind is DigestKind.DAILY else "weekly on Mondays"
        return f"{day} at {self.at:%H:%M} ({self.timezone})"

    @property
    def zone(self) -> ZoneInfo:
        """The zone whose clock the periods follow (UTC for an interval digest)."""
        if self.kind is DigestKind.INTERVAL or self.timezone is None:
            return ZoneInfo("UTC")
        return ZoneInfo(self.timezone)

    def period_containing(self, moment: datetime) -> tuple[datetime, datetime]:
        """The period ``[start, end)`` that holds ``moment``, both aware UTC.

        A moment exactly at a period's end belongs to the next period, so the
        periods tile time: the period holding ``end`` starts at ``end``.
        ``moment`` must be timezone-aware (a naive one is a ``ValueError``).
        """
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("moment must be timezone-aware")
        moment = moment.astimezone(UTC)
        if self.kind is DigestKind.INTERVAL:
            assert self.seconds is not None
            step = timedelta(seconds=self.seconds)
            # Integer floor division of timedeltas: exact, and right before 1970 too.
            start = EPOCH + (moment - EPOCH) // step * step
            return start, start + step
        assert self.at is not None
        wall = moment.astimezone(self.zone).replace(tzinfo=None, fold=0)
        if self.kind is DigestKind.HOURLY:
            ends = _hourly_ends(wall, self.at.minute, self.zone)
        else:
            if self.kind is DigestKind.DAILY:
                first, step_days, count = wall.date(), 1, _DAILY_RADIUS
            else:
                first, step_days, count = wall.date() - timedelta(wall.weekday()), 7, _WEEKLY_RADIUS
            days = [first + timedelta(days=step_days * k) for k in range(-count, count + 1)]
            ends = {_resolve(datetime.combine(day, self.at), self.zone) for day in days}
        return _around(sorted(ends), moment)


def _blank_to_none(text: str | None) -> str | None:
    return None if text is None or not text.strip() else text.strip()


def _parse_digest(digest: str | int) -> tuple[DigestKind, int | None]:
    # bool is an int: refuse ``digest = true`` rather than read it as 1 second.
    if isinstance(digest, bool) or not isinstance(digest, str | int):
        raise ConfigError.about(
            "digest", f"expected hourly, daily, weekly or a number of seconds, not {digest!r}"
        )
    if isinstance(digest, str):
        text = digest.strip().lower()
        if text in (DigestKind.HOURLY, DigestKind.DAILY, DigestKind.WEEKLY):
            return DigestKind(text), None
        if _DIGITS.fullmatch(text) is None:
            raise ConfigError.about(
                "digest", f"expected hourly, daily, weekly or a number of seconds, not {digest!r}"
            )
        seconds = int(text)
    else:
        seconds = digest
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise ConfigError.about(
            "digest",
            f"{seconds} seconds is out of range: a digest period is {MIN_SECONDS} seconds"
            f" to 31 days ({MAX_SECONDS} seconds)",
        )
    return DigestKind.INTERVAL, seconds


def _parse_at(text: str) -> time:
    match = _AT.fullmatch(text)
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ConfigError.about("digest_at", f"expected a 24-hour time HH:MM, not {text!r}")
    return time(int(match[1]), int(match[2]))


# Files of a zoneinfo folder that are no zone's name: this machine's own zone
# (Debian links /usr/share/zoneinfo/localtime to /etc/localtime), and the rules
# of POSIX TZ strings.
_NOT_ZONES = frozenset({"localtime", "posixrules"})


@cache
def _zone_names() -> dict[str, str]:
    """Every IANA zone name the system knows, by its lowercase form."""
    return {name.lower(): name for name in available_timezones() if name not in _NOT_ZONES}


def _parse_timezone(text: str) -> str:
    """The IANA name ``text`` spells, in its own case (``europe/berlin`` is
    ``Europe/Berlin``). Only names of the tz database: no file paths, no
    ``localtime``, no POSIX TZ strings."""
    name = _zone_names().get(text.lower())
    if name is None:
        raise ConfigError.about(
            "timezone", f"unknown time zone {text!r} (expected an IANA name like Europe/Berlin)"
        )
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:
        raise ConfigError.about("timezone", f"cannot load time zone {name!r}: {error}") from error
    return name


def _resolve(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant (UTC) of the naive wall time ``wall`` on ``zone``'s clock, with
    ``fold=0``: a repeated time is its first occurrence, a skipped one is read
    with the offset before the gap (so lands the gap's length after it)."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _shows(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _hourly_ends(wall: datetime, minute: int, zone: ZoneInfo) -> set[datetime]:
    """Every instant near ``wall`` at which ``zone``'s clock shows ``:minute:00``:
    both occurrences of a repeated hour, none of a skipped one."""
    base = wall.replace(minute=minute, second=0, microsecond=0)
    ends: set[datetime] = set()
    for hours in range(-_HOURLY_RADIUS, _HOURLY_RADIUS + 1):
        slot = base + timedelta(hours=hours)
        for fold in (0, 1):
            instant = slot.replace(tzinfo=zone, fold=fold).astimezone(UTC)
            if _shows(instant, zone) == slot:
                ends.add(instant)
    return ends


def _around(ends: list[datetime], moment: datetime) -> tuple[datetime, datetime]:
    """The last of the sorted ``ends`` at or before ``moment`` and the first after it."""
    before = [end for end in ends if end <= moment]
    after = [end for end in ends if end > moment]
    if not before or not after:  # no zone's clock jumps far enough for this
        raise RuntimeError(f"no digest period found around {moment.isoformat()}")
    return before[-1], after[0]
