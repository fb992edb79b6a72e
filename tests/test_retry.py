"""The retry schedule, with a seeded random source and no sleeping."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from feedbot.errors import TargetRefused
from feedbot.headers import parse_retry_after
from feedbot.model import DeliveryStatus
from feedbot.notify.retry import DEFAULT_SCHEDULE, RetryPolicy, Verdict, judge

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def test_schedule_follows_the_defaults_within_jitter() -> None:
    policy = RetryPolicy()
    rng = random.Random(7)
    for attempt, base in enumerate(DEFAULT_SCHEDULE, start=1):
        when = policy.next_attempt(attempt, NOW, rng)
        assert when is not None
        delay = (when - NOW).total_seconds()
        assert base * 0.8 <= delay <= base * 1.2


def test_schedule_runs_out_after_the_last_retry() -> None:
    assert RetryPolicy().next_attempt(len(DEFAULT_SCHEDULE) + 1, NOW, random.Random(1)) is None


def test_jitter_spreads_retries() -> None:
    policy = RetryPolicy()
    delays = {policy.next_attempt(2, NOW, random.Random(seed)) for seed in range(20)}
    assert len(delays) > 15


def test_no_jitter_is_exact() -> None:
    policy = RetryPolicy(schedule=(5, 60), jitter=0)
    assert policy.next_attempt(1, NOW, random.Random(1)) == NOW + timedelta(seconds=5)


def test_retry_after_is_a_minimum_and_capped() -> None:
    policy = RetryPolicy(schedule=(5,), jitter=0, max_retry_after=3600)
    assert policy.next_attempt(1, NOW, random.Random(1), retry_after=120) == NOW + timedelta(
        seconds=120
    )
    assert policy.next_attempt(1, NOW, random.Random(1), retry_after=1) == NOW + timedelta(
        seconds=5
    )
    assert policy.next_attempt(1, NOW, random.Random(1), retry_after=10**7) == NOW + timedelta(
        hours=1
    )


def test_parse_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after("Fri, 27 Nov 2026 12:01:00 GMT", NOW) == 60
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_disable_after_a_long_failure() -> None:
    policy = RetryPolicy(disable_after=timedelta(days=5))
    assert not policy.should_disable(None, NOW)
    assert not policy.should_disable(NOW - timedelta(days=4), NOW)
    assert policy.should_disable(NOW - timedelta(days=5), NOW)


def verdict(**kw: object) -> Verdict:
    args: dict[str, object] = {
        "status": 500,
        "error": "HTTP 500",
        "attempts_made": 1,
        "attempted_at": NOW,
        "failing_since": None,
        "rng": random.Random(1),
    }
    args.update(kw)
    return judge(RetryPolicy(jitter=0), **args)  # type: ignore[arg-type]


def test_judge_a_2xx_is_done() -> None:
    assert verdict(status=204, error=None).outcome is DeliveryStatus.DONE


def test_judge_a_failure_is_retried_on_the_schedule() -> None:
    v = verdict(retry_after=60)
    assert v.outcome is DeliveryStatus.PENDING and v.next_attempt_at == NOW + timedelta(seconds=60)
    assert verdict(attempts_made=len(DEFAULT_SCHEDULE) + 1).outcome is DeliveryStatus.FAILED


def test_judge_gone_and_refused_and_long_failure() -> None:
    gone = verdict(status=410, error="HTTP 410 Gone")
    assert (gone.outcome, gone.disable_subscription) == (
        DeliveryStatus.FAILED,
        "the receiver answered 410 Gone",
    )
    refusal = TargetRefused("10.0.0.1", [("10.0.0.1", "private")])
    refused = verdict(status=None, error=str(refusal), refusal=refusal)
    assert (refused.outcome, refused.disable_subscription) == (DeliveryStatus.FAILED, None)
    tired = verdict(failing_since=NOW - timedelta(days=6))
    assert tired.outcome is DeliveryStatus.FAILED
    assert tired.disable_subscription == "failing since 2026-11-21 12:00 UTC"


def test_judge_reads_the_refusal_from_its_type_not_from_the_text() -> None:
    """Only the SSRF guard's refusal is final; an error whose text merely reads
    like one (a receiver's or a resolver's words) is retried like any other."""
    alike = verdict(status=None, error="refused: 10.0.0.1 (private)")
    assert alike.outcome is DeliveryStatus.PENDING
