"""When to try a failed delivery again, and what an attempt's answer means. Pure.

The schedule follows the Standard Webhooks recommendation (5 s, 5 min, 30 min,
2 h, 5 h, 10 h, 10 h), each wait stretched or shrunk by a random jitter so that
a receiver coming back up is not hit by every retry at the same instant. A
``Retry-After`` from the receiver is honoured as a minimum wait.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from feedbot.errors import TargetRefused
from feedbot.model import DeliveryStatus

DEFAULT_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE  # seconds before retry 1, 2, ...
    jitter: float = 0.2  # each wait is multiplied by a random 1 ± jitter
    max_retry_after: float = 86_400.0  # a Retry-After longer than this is capped
    disable_after: timedelta = timedelta(days=5)  # failing this long disables a subscription

    def next_attempt(
        self,
        attempts_made: int,
        now: datetime,
        rng: random.Random,
        retry_after: float | None = None,
    ) -> datetime | None:
        """When to try again after ``attempts_made`` failed attempts; ``None``
        when the schedule has run out and the delivery has failed."""
        if attempts_made > len(self.schedule):
            return None
        delay = self.schedule[attempts_made - 1] * (1 + rng.uniform(-self.jitter, self.jitter))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return now + timedelta(seconds=delay)

    def should_disable(self, failing_since: datetime | None, now: datetime) -> bool:
        return failing_since is not None and now - failing_since >= self.disable_after


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one attempt's answer means for its delivery."""

    outcome: DeliveryStatus  # DONE, PENDING (try again at next_attempt_at) or FAILED
    next_attempt_at: datetime | None = None
    disable_subscription: str | None = None  # a reason, when the subscription must stop


def judge(
    policy: RetryPolicy,
    *,
    status: int | None,
    error: str | None,
    attempts_made: int,
    attempted_at: datetime,
    failing_since: datetime | None,
    rng: random.Random,
    retry_after: float | None = None,
    refusal: TargetRefused | None = None,
) -> Verdict:
    """The verdict on an attempt: ``error`` is None for a 2xx, ``refusal`` the SSRF
    guard's when that is why it failed. 410 Gone stops the subscription; a target
    the guard refused will not become allowed by waiting; anything else is retried
    on the schedule, until it runs out or the subscription has been failing for
    ``policy.disable_after``."""
    if error is None:
        return Verdict(DeliveryStatus.DONE)
    if status == 410:
        return Verdict(DeliveryStatus.FAILED, disable_subscription="the receiver answered 410 Gone")
    if refusal is not None:
        return Verdict(DeliveryStatus.FAILED)
    if policy.should_disable(failing_since, attempted_at):
        assert failing_since is not None
        reason = f"failing since {failing_since:%Y-%m-%d %H:%M} UTC"
        return Verdict(DeliveryStatus.FAILED, disable_subscription=reason)
    next_at = policy.next_attempt(attempts_made, attempted_at, rng, retry_after)
    if next_at is None:
        return Verdict(DeliveryStatus.FAILED)
    return Verdict(DeliveryStatus.PENDING, next_at)
