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
