"""Digest schedules: parsing and refusing the digest keys, and the periods of every
kind, across DST changes, skipped and repeated wall times, and at their edges."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedbot.digest import DigestKind, DigestSchedule
from feedbot.errors import ConfigError

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def schedule(digest: str | int, at: str | None = None, zone: str | None = None) -> DigestSchedule:
    parsed = DigestSchedule.parse(digest, at, zone)
    assert parsed is not None
    return parsed


# -- parse ------------------------------------------------------------------------------


def test_parse_kinds_and_defaults() -> None:
    assert schedule("daily") == DigestSchedule(DigestKind.DAILY, at=time(8), timezone="UTC")
    assert schedule(" Weekly ", "18:45", "Europe/Berlin") == DigestSchedule(
        DigestKind.WEEKLY, at=time(18, 45), timezone="Europe/Berlin"
    )
    assert schedule("HOURLY") == DigestSchedule(DigestKind.HOURLY, at=time(0), timezone="UTC")
    assert schedule(3600) == DigestSchedule(DigestKind.INTERVAL, seconds=3600)
    assert schedule(" 900 ") == DigestSchedule(DigestKind.INTERVAL, seconds=900)


def test_parse_nothing_is_none() -> None:
    assert DigestSchedule.parse(None, None, None) is None
    assert DigestSchedule.parse("", None, None) is None
    assert DigestSchedule.parse("  ", "", " ") is None


def test_hourly_keeps_only_the_minute() -> None:
    assert schedule("hourly", "17:30").at == time(0, 30)
    assert schedule("hourly", "17:30").values() == ("hourly", "00:30", "UTC")


def test_digest_at_and_timezone_are_normalised() -> None:
    assert schedule("daily", " 7:05 ", "europe/berlin").values() == (
        "daily",
        "07:05",
        "Europe/Berlin",
    )


def test_interval_ignores_but_keeps_a_timezone() -> None:
    parsed = schedule("600", None, "Asia/Kolkata")
    assert parsed.values() == ("600", None, "Asia/Kolkata")
    assert parsed.period_containing(utc(2026, 1, 1, 0, 5)) == (
        utc(2026, 1, 1, 0, 0),
        utc(2026, 1, 1, 0, 10),
    )


@pytest.mark.parametrize(
    "keys",
    [
        ("daily", None, None),
        ("weekly", "23:59", "America/New_York"),
        ("hourly", "00:15", "Asia/Kathmandu"),
        ("60", None, None),
        (str(31 * 86400), None, "UTC"),
    ],
)
def test_values_round_trip(keys: tuple[str, str | None, str | None]) -> None:
    parsed = schedule(*keys)
    assert DigestSchedule.parse(*parsed.values()) == parsed


def test_str() -> None:
    assert str(schedule("daily", None, "Europe/Berlin")) == "daily at 08:00 (Europe/Berlin)"
    assert str(schedule("weekly")) == "weekly on Mondays at 08:00 (UTC)"
    assert str(schedule("hourly", "00:30")) == "hourly at :30 (UTC)"
    assert str(schedule(900)) == "every 900 seconds"


@pytest.mark.parametrize(
    ("digest", "at", "zone", "field"),
    [
        ("monthly", None, None, "digest"),
        ("9", None, None, "digest"),
        (9, None, None, "digest"),
        (31 * 86400 + 1, None, None, "digest"),
        ("1.5", None, None, "digest"),
        ("-60", None, None, "digest"),
        ("+60", None, None, "digest"),
        ("60s", None, None, "digest"),
        (True, None, None, "digest"),
        (3600.0, None, None, "digest"),
        ("daily", "24:00", None, "digest_at"),
        ("daily", "08:60", None, "digest_at"),
        ("daily", "8", None, "digest_at"),
        ("daily", "8am", None, "digest_at"),
        ("daily", "08:00:00", None, "digest_at"),
        ("hourly", ":30", None, "digest_at"),
        ("3600", "08:00", None, "digest_at"),
        ("daily", None, "Mars/Olympus_Mons", "timezone"),
        ("daily", None, "CEST", "timezone"),
        ("daily", None, "../../etc/passwd", "timezone"),
        ("daily", None, "/usr/share/zoneinfo/UTC", "timezone"),
        ("daily", None, "localtime", "timezone"),
        ("daily", None, "UTC+1", "timezone"),
        ("3600", None, "Nowhere/Else", "timezone"),
        (None, "08:00", None, "digest_at"),
        ("", None, "Europe/Berlin", "timezone"),
    ],
)
def test_refusals_name_the_field(digest: Any, at: str | None, zone: str | None, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DigestSchedule.parse(digest, at, zone)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert caught.value.reason


def test_interval_refusal_of_digest_at_says_why() -> None:
    with pytest.raises(ConfigError, match="hourly, daily and weekly"):
        DigestSchedule.parse(900, "08:00", None)


# -- periods: intervals -------------------------------------------------------------------


def test_interval_periods_are_epoch_aligned() -> None:
    every_7_minutes = schedule(420)
    start, end = every_7_minutes.period_containing(utc(2026, 5, 1, 12, 0, 0))
    assert end - start == timedelta(seconds=420)
    assert int(start.timestamp()) % 420 == 0
    assert start <= utc(2026, 5, 1, 12) < end
    # Before 1970 too: floor, not truncation towards zero.
    start, end = every_7_minutes.period_containing(utc(1969, 12, 31, 23, 59, 59))
    assert start == utc(1969, 12, 31, 23, 53) and end == utc(1970, 1, 1)


def test_a_moment_at_an_end_belongs_to_the_next_period() -> None:
    quarter = schedule(900)
    assert quarter.period_containing(utc(2026, 5, 1, 12, 15)) == (
        utc(2026, 5, 1, 12, 15),
        utc(2026, 5, 1, 12, 30),
    )
    just_before = utc(2026, 5, 1, 12, 15) - timedelta(microseconds=1)
    assert quarter.period_containing(just_before)[1] == utc(2026, 5, 1, 12, 15)
    daily = schedule("daily", "08:00", "Europe/Berlin")
    assert daily.period_containing(utc(2026, 1, 15, 7))[0] == utc(2026, 1, 15, 7)
    assert daily.period_containing(utc(2026, 1, 15, 6, 59, 59))[1] == utc(2026, 1, 15, 7)


def test_periods_are_utc_for_any_aware_moment_and_naive_is_refused() -> None:
    tokyo = timezone(timedelta(hours=9))
    start, end = schedule("daily").period_containing(datetime(2026, 5, 2, 3, 0, tzinfo=tokyo))
    assert (start, end) == (utc(2026, 5, 1, 8), utc(2026, 5, 2, 8))  # 18:00 UTC on 1 May
    assert start.tzinfo is UTC and end.tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule("daily").period_containing(datetime(2026, 5, 1, 12))
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule(900).period_containing(datetime(2026, 5, 1, 12))


# -- periods: hourly -------------------------------------------------------------------


def test_hourly_in_utc() -> None:
    assert schedule("hourly", "00:20").period_containing(utc(2026, 5, 1, 12, 19)) == (
        utc(2026, 5, 1, 11, 20),
        utc(2026, 5, 1, 12, 20),
    )
    assert schedule("hourly").period_containing(utc(2026, 5, 1, 12, 0)) == (
        utc(2026, 5, 1, 12),
        utc(2026, 5, 1, 13),
    )


def test_hourly_whole_hour_zones_are_utc_aligned_even_across_dst() -> None:
    berlin = schedule("hourly", "00:10", "Europe/Berlin")
    # The spring-forward and fall-back nights: still every hour at :10 UTC.
    for moment in (utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30), utc(2026, 10, 25, 0, 30)):
        start, end = berlin.period_containing(moment)
        assert end - start == HOUR and start.minute == 10


def test_hourly_half_and_quarter_hour_zones() -> None:
    # Asia/Kolkata is +05:30: on the hour there is half past in UTC.
    assert schedule("hourly", "00:00", "Asia/Kolkata").period_containing(utc(2026, 5, 1, 12)) == (
        utc(2026, 5, 1, 11, 30),
        utc(2026, 5, 1, 12, 30),
    )
    # Asia/Kathmandu is +05:45.
    start, end = schedule("hourly", "00:00", "Asia/Kathmandu").period_containing(utc(2026, 5, 1))
    assert (start, end) == (utc(2026, 4, 30, 23, 15), utc(2026, 5, 1, 0, 15))


def test_hourly_repeated_hour_ends_twice() -> None:
    new_york = schedule("hourly", "00:30", "America/New_York")
    # 2026-11-01: 01:30 EDT (05:30 UTC), then 01:30 EST (06:30 UTC).
    assert new_york.period_containing(utc(2026, 11, 1, 6)) == (
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 6, 30),
    )


def test_hourly_around_a_half_hour_dst_change() -> None:
    # Australia/Lord_Howe goes from +10:30 to +11:00 at 02:00 local on 2026-10-04
    # (15:30 UTC on the 3rd): 02:15 never shows, so the period from 01:15 to 03:15
    # is an hour and a half.
    lord_howe = schedule("hourly", "00:15", "Australia/Lord_Howe")
    assert lord_howe.period_containing(utc(2026, 10, 3, 15, 30)) == (
        utc(2026, 10, 3, 14, 45),
        utc(2026, 10, 3, 16, 15),
    )


# -- periods: daily ---------------------------------------------------------------------


def test_daily_berlin_follows_dst() -> None:
    berlin = schedule("daily", "08:00", "Europe/Berlin")
    assert berlin.period_containing(utc(2026, 1, 15, 12)) == (
        utc(2026, 1, 15, 7),
        utc(2026, 1, 16, 7),
    )
    assert berlin.period_containing(utc(2026, 7, 15, 12)) == (
        utc(2026, 7, 15, 6),
        utc(2026, 7, 16, 6),
    )
    # The period ending on the spring-forward day is 23 hours, on the fall-back day 25.
    start, end = berlin.period_containing(utc(2026, 3, 29, 5))
    assert (start, end) == (utc(2026, 3, 28, 7), utc(2026, 3, 29, 6))
    assert end - start == 23 * HOUR
    start, end = berlin.period_containing(utc(2026, 10, 25, 5))
    assert (start, end) == (utc(2026, 10, 24, 6), utc(2026, 10, 25, 7))
    assert end - start == 25 * HOUR


def test_daily_new_york_follows_dst() -> None:
    new_york = schedule("daily", "18:00", "America/New_York")
    assert new_york.period_containing(utc(2026, 1, 15, 12)) == (
        utc(2026, 1, 14, 23),
        utc(2026, 1, 15, 23),
    )
    start, end = new_york.period_containing(utc(2026, 3, 8, 12))  # spring forward
    assert (start, end) == (utc(2026, 3, 7, 23), utc(2026, 3, 8, 22))
    start, end = new_york.period_containing(utc(2026, 11, 1, 12))  # fall back
    assert (start, end) == (utc(2026, 10, 31, 22), utc(2026, 11, 1, 23))


def test_daily_time_in_a_dst_gap_is_read_with_the_offset_before_it() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29 (02:00 CET -> 03:00 CEST). As
    # zoneinfo's fold=0 reads it: 02:30 CET, which is 03:30 CEST (01:30 UTC).
    berlin = schedule("daily", "02:30", "Europe/Berlin")
    assert berlin.period_containing(utc(2026, 3, 29, 1)) == (
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 30),
    )
    # The day after keeps its 02:30 CEST, so that period is 23 hours.
    assert berlin.period_containing(utc(2026, 3, 29, 1, 30)) == (
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 30, 0, 30),
    )
    # New York: 02:30 on 2026-03-08 is 02:30 EST = 03:30 EDT = 07:30 UTC.
    new_york = schedule("daily", "02:30", "America/New_York")
    assert new_york.period_containing(utc(2026, 3, 8, 7))[1] == utc(2026, 3, 8, 7, 30)


def test_daily_time_shown_twice_is_its_first_occurrence() -> None:
    # 02:30 shows twice in Berlin on 2026-10-25: first in CEST (00:30 UTC).
    berlin = schedule("daily", "02:30", "Europe/Berlin")
    start, end = berlin.period_containing(utc(2026, 10, 25, 0, 45))
    assert start == utc(2026, 10, 25, 0, 30)  # not 01:30 UTC, the second 02:30
    assert end == utc(2026, 10, 26, 1, 30)
    assert end - start == 25 * HOUR
    new_york = schedule("daily", "01:30", "America/New_York")
    assert new_york.period_containing(utc(2026, 11, 1, 6))[0] == utc(2026, 11, 1, 5, 30)


# -- periods: weekly ---------------------------------------------------------------------


def test_weekly_ends_on_mondays() -> None:
    weekly = schedule("weekly", "09:00")
    # Sunday 2026-05-03 -> the week ending Monday 2026-05-04 09:00.
    assert weekly.period_containing(utc(2026, 5, 3, 23)) == (
        utc(2026, 4, 27, 9),
        utc(2026, 5, 4, 9),
    )
    # Monday before and at 09:00.
    assert weekly.period_containing(utc(2026, 5, 4, 8, 59))[1] == utc(2026, 5, 4, 9)
    assert weekly.period_containing(utc(2026, 5, 4, 9))[1] == utc(2026, 5, 11, 9)
    for moment in (utc(2026, 5, 1), utc(2026, 5, 6, 12)):
        start, end = weekly.period_containing(moment)
        assert start.weekday() == 0 and end.weekday() == 0


def test_weekly_in_a_zone_is_monday_there_and_follows_dst() -> None:
    # Monday 08:00 in Auckland (+12 in winter) is Sunday 20:00 UTC.
    auckland = schedule("weekly", "08:00", "Pacific/Auckland")
    start, end = auckland.period_containing(utc(2026, 6, 10))
    assert (start, end) == (utc(2026, 6, 7, 20), utc(2026, 6, 14, 20))
    berlin = schedule("weekly", "08:00", "Europe/Berlin")
    start, end = berlin.period_containing(utc(2026, 3, 27))  # holds the spring-forward Sunday
    assert (start, end) == (utc(2026, 3, 23, 7), utc(2026, 3, 30, 6))
    assert end - start == 7 * DAY - HOUR


# -- properties -----------------------------------------------------------------------------

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "America/Sitka",
    "Europe/Dublin",
]
_at = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
_schedules = st.one_of(
    st.builds(
        DigestSchedule.parse,
        st.sampled_from(["hourly", "daily", "weekly"]),
        _at,
        st.sampled_from(ZONES),
    ),
    st.builds(DigestSchedule.parse, st.integers(10, 31 * 86400), st.none(), st.none()),
)
_moments = st.datetimes(
    min_value=datetime(1850, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=400, deadline=None)
@given(parsed=_schedules, moment=_moments)
def test_periods_hold_the_moment_and_tile_time(
    parsed: DigestSchedule | None, moment: datetime
) -> None:
    assert parsed is not None
    start, end = parsed.period_containing(moment)
    assert start.tzinfo is UTC and end.tzinfo is UTC
    assert start <= moment < end
    assert parsed.period_containing(end)[0] == end
    assert parsed.period_containing(start) == (start, end)
    assert parsed.period_containing(start - timedelta(microseconds=1))[1] == start


@settings(max_examples=300, deadline=None)
@given(
    at=_at,
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
    moment=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2150, 1, 1), timezones=st.just(UTC)
    ),
)
def test_daily_periods_are_23_24_or_25_hours(at: str, zone: str, moment: datetime) -> None:
    start, end = schedule("daily", at, zone).period_containing(moment)
    assert end - start in (23 * HOUR, 24 * HOUR, 25 * HOUR)
    local_end = end.astimezone(schedule("daily", at, zone).zone)
    # The end is at digest_at on the zone's clock, or the gap's length after it.
    assert (local_end.hour, local_end.minute) in (
        (int(at[:2]), int(at[3:])),
        (int(at[:2]) + 1, int(at[3:])),
    )
