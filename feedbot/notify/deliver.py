"""The delivery worker: claims due deliveries from the outbox and posts them.

One :class:`Deliverer` per process, over one ``aiohttp.ClientSession``. It keeps
at most ``max_in_flight`` requests going, at most ``per_subscription`` to any one
subscription and at most ``per_host`` to any one host, except that a subscription
with nothing in flight may always send one: every Slack (or Discord) webhook is
on one host, and a few subscribers whose receivers hang must not hold that
host's slots against all the others. So a slow or dead receiver ties up its own
slots and never anyone else's. Claims go round the subscriptions (the outbox
gives each one's oldest due delivery first), and what may not be sent now is
not claimed at all.

When nothing can be sent, the deliverer sleeps until the next delivery is due
or it is woken: new deliveries were queued, or attempts ended and freed slots
(``idle_poll`` bounds the sleep, for changes made by other processes that
nobody announces). Slots freed by one claim's attempts are claimed again
together, and their attempts recorded together, once they have all ended or
soon after the first did (see ``Deliverer._consider``): a claim and a record
each cost a transaction under the store's write lock, whatever they hold. It
never claims what it cannot send, so an idle deliverer makes no writes.

Every attempt is bounded by a timeout, follows no redirects, reads at most a
small part of the answer, and is recorded in the outbox with its outcome; the
outbox is the only state, so a crash at any point loses nothing (an alert in
flight is sent again, with the same webhook-id).

An operator's template renders in a worker process, within a time and a memory
limit (feedbot/notify/render_workers.py), while the loop goes on with the other
attempts. A template that fails or runs over a limit is a failed attempt with
the reason, retried like any other; ``template_failures`` of them in a row
disable the subscription, as a 410 does.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from urllib.parse import urlsplit

import aiohttp

from feedbot.clock import utc_now
from feedbot.errors import FeedbotError, TargetRefused, TemplateError
from feedbot.headers import parse_retry_after
from feedbot.model import DeliveryStatus, Subscription
from feedbot.notify.apprise_messages import AppriseMessage
from feedbot.notify.apprise_target import AppriseSender, AppriseTarget
from feedbot.notify.retry import RetryPolicy, judge
from feedbot.notify.ssrf import refusal_of
from feedbot.store import AttemptReport, Claim, DeliveryJob, Outbox

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 64 * 1024  # what is read of a receiver's answer, for the error text


@dataclass(frozen=True, slots=True)
class Request:
    """What to send for one attempt: the body and its headers (signature included)."""

    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class AppriseRequest:
    """What to hand Apprise for one attempt to an Apprise URL."""

    target: AppriseTarget
    message: AppriseMessage


Outgoing = Request | AppriseRequest

# Builds the request of one attempt; the daemon composes formats and signing here.
# An operator's template renders in a worker process: its request is awaited.
RequestBuilder = Callable[[DeliveryJob, datetime], Outgoing | Awaitable[Request]]


@dataclass(frozen=True, slots=True)
class DelivererSettings:
    max_in_flight: int = 64
    per_host: int = 8  # a subscription with nothing in flight may go beyond it
    per_subscription: int = 4
    timeout: float = 10.0  # seconds for a whole attempt
    lease: timedelta = timedelta(seconds=120)  # must outlast an attempt
    idle_poll: float = 1.0  # the longest sleep between outbox checks
    user_agent: str = "feedbot"
    # An operator's template failing this many renders in a row (an error, or a
    # time, memory or output limit) disables its subscription.
    template_failures: int = 5


class Deliverer:
    def __init__(
        self,
        outbox: Outbox,
        session: aiohttp.ClientSession,
        build_request: RequestBuilder,
        *,
        settings: DelivererSettings | None = None,
        policy: RetryPolicy | None = None,
        worker_id: str = "feedbot",
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        on_attempt: Callable[[DeliveryJob, AttemptReport], Awaitable[None] | None] | None = None,
        apprise: AppriseSender | None = None,
    ) -> None:
        self.outbox = outbox
        self.session = session
        self.build_request = build_request
        self.settings = settings or DelivererSettings()
        self.policy = policy or RetryPolicy()
        self.worker_id = worker_id
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_attempt = on_attempt
        # Apprise URLs are sent from threads of their own (Apprise blocks).
        self.apprise = apprise or AppriseSender(timeout=self.settings.timeout)
        self._template_failures: dict[str, int] = {}  # subscription -> renders failed in a row
        self._wake = asyncio.Event()
        self._idle_now = False
        self._next_look: datetime | None = None  # when the sleeping loop looks again
        # The soonest retry recorded since the last claim began: that claim may
        # have looked for the next due time before the retry was committed.
        self._retry_at: datetime | None = None
        # -> host, subscription, the claim it came from (a count of the claims that
        # took any)
        self._in_flight: dict[asyncio.Task[None], tuple[str, str, int]] = {}
        self._load = _Load()
        # The last claim that took any: which it was, its attempts still in flight
        # and how long it took; whether a claim is under way, the attempts ended
        # since it began, and the timer that wakes the loop for the next (see
        # _consider).
        self._claims = 0
        self._claimed_left = 0
        self._claim_seconds = 0.0
        self._claiming = False
        self._freed = 0
        self._gathering: asyncio.TimerHandle | None = None
        # Finished attempts wait here to be recorded together: one transaction for
        # many attempts, not one commit each (the flusher is woken with the loop,
        # see _consider).
        self._results: list[tuple[DeliveryJob, AttemptReport]] = []
        self._results_waiting = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False  # drain asks the flusher to end
        self._timeout = aiohttp.ClientTimeout(total=self.settings.timeout)

    def wake(self) -> None:
        """New deliveries were queued: look at the outbox now, not at the next tick."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def idle(self) -> bool:
        """True while the loop sleeps, waiting for a wake-up or a due time."""
        return self._idle_now

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, then return (in-flight attempts go on;
        :meth:`drain` waits for them)."""
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._record_results(), name="record attempts")
        while not stop.is_set():
            try:
                claim = await self._claim()
            except FeedbotError as exc:
                log.error("cannot claim deliveries: %s", exc)
                claim = Claim(())
            if claim.more and self.in_flight < self.settings.max_in_flight:
                continue  # more may be sendable right now
            await self._idle(stop, claim.next_due)

    async def drain(self, grace: float) -> int:
        """Wait up to ``grace`` seconds for in-flight attempts, then cancel the
        rest (their claims run out and they are retried). Returns how many were cut."""
        tasks = list(self._in_flight)
        pending: set[asyncio.Task[None]] = set()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._gathering is not None:
            self._gathering.cancel()
            self._gathering = None
        if self._flusher is not None:
            # Let it end between two writes: cancelled inside one, the results it
            # had taken would be dropped (and their attempts made again).
            self._closing = True
            self._results_waiting.set()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
            self._closing = False
        await self._flush()
        aclose = getattr(self.build_request, "aclose", None)
        if aclose is not None:
            await aclose()  # the request builder's template render workers
        await self.apprise.aclose()
        return len(pending)

    async def _idle(self, stop: asyncio.Event, next_due: datetime | None) -> None:
        """Sleep until ``next_due``, a wake-up (new deliveries; finished attempts
        freed slots) or ``stop``, at most ``idle_poll`` seconds."""
        now = self._clock()
        timeout = self.settings.idle_poll
        if self._retry_at is not None:
            next_due = min(next_due or self._retry_at, self._retry_at)
        if next_due is not None:
            timeout = min(timeout, (next_due - now).total_seconds())
            if timeout <= 0:
                return
        self._next_look = now + timedelta(seconds=timeout)
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        self._idle_now = True
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._idle_now = False
            self._next_look = None
            for waiter in waiters:
                waiter.cancel()
            self._wake.clear()

    async def _claim(self) -> Claim:
        if self._gathering is not None:
            # Claiming now (new deliveries were queued): what the timer gathered
            # is recorded now too, not left for the next.
            self._gathering.cancel()
            self._gathering = None
            self._results_waiting.set()
        self._freed = 0
        self._claiming = True
        try:
            claim = await self._take()
        finally:
            self._claiming = False
        if self._freed:
            self._consider()  # attempts ended while it claimed
        return claim

    async def _take(self) -> Claim:
        settings = self.settings
        free = settings.max_in_flight - self.in_flight
        if free <= 0:
            return Claim(())  # a finishing attempt wakes the loop
        admission = self._load.admission(settings.per_host, settings.per_subscription)
        self._retry_at = None
        started = time.perf_counter()
        claim = await self.outbox.claim(
            now=self._clock(),
            limit=free,
            worker=self.worker_id,
            lease=settings.lease,
            per_subscription=settings.per_subscription,
            room=admission.room(),
            admit=admission.admit,
        )
        if claim.jobs:
            self._claims += 1
            self._claimed_left = len(claim.jobs)
            self._claim_seconds = time.perf_counter() - started
        for job in claim.jobs:
            host = _host_of(job.subscription.url)
            self._load.add(host, job.subscription.id)
            task = asyncio.create_task(self._deliver(job), name=f"deliver {job.delivery.id}")
            self._in_flight[task] = (host, job.subscription.id, self._claims)
            task.add_done_callback(self._finished)
        return claim

    def _finished(self, task: asyncio.Task[None]) -> None:
        host, subscription_id, claimed_by = self._in_flight.pop(task)
        self._load.remove(host, subscription_id)
        if claimed_by == self._claims:
            self._claimed_left -= 1
        self._freed += 1
        if not self._claiming:
            self._consider()
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", exc_info=task.exception())

    def _consider(self) -> None:
        """Attempts ended and freed slots: wake the loop to claim again, and the
        flusher to record them, once the attempts of the last claim have all
        ended, or as long after the first of them ended as that claim took,
        whichever comes first (never later than ``idle_poll``).

        A claim costs much the same whatever it takes, and so does recording
        attempts: each is a transaction of several statements under the store's
        write lock, which every other delivering process waits for. So one claim
        and one record for the slots many attempts freed, not one of each per
        attempt; the slower the claims, the longer they gather. Attempts of earlier
        claims still in flight (a receiver that hangs) do not hold the next claim
        back, and one of the last claim's holds it back that long at most."""
        if not self._claimed_left:
            self._wake.set()
            self._results_waiting.set()
        elif self._gathering is None:
            delay = min(self._claim_seconds, self.settings.idle_poll)
            self._gathering = asyncio.get_running_loop().call_later(delay, self._gathered)

    def _gathered(self) -> None:
        self._gathering = None
        self._wake.set()
        self._results_waiting.set()

    async def _deliver(self, job: DeliveryJob) -> None:
        report = await self.attempt(job)
        self._results.append((job, report))

    async def _record_results(self) -> None:
        while not self._closing:
            await self._results_waiting.wait()
            self._results_waiting.clear()
            await self._flush()

    async def _flush(self) -> None:
        batch, self._results = self._results, []
        if not batch:
            return
        try:
            lost = await self.outbox.finish_attempts(
                [(job.delivery, report) for job, report in batch]
            )
        except FeedbotError as exc:
            # Unrecorded attempts keep their claim until the lease ends, then are
            # tried again (with the same webhook-id): at least once, never lost.
            log.error("cannot record %d delivery attempts: %s", len(batch), exc)
            return
        for job, report in batch:
            if job.delivery.id in lost:
                # Its lease ran out and another attempt took over: that one reports.
                log.info(
                    "late answer ignored: the claim had passed on",
                    extra={"delivery_id": job.delivery.id, "subscription_id": job.subscription.id},
                )
                continue
            self._log(job, report)
            retry = report.next_attempt_at
            if retry is not None:
                self._retry_at = min(self._retry_at or retry, retry)
                if self._next_look is not None and retry < self._next_look:
                    self._wake.set()  # the sleeping loop would look only later
            if report.disable_subscription:
                log.warning(
                    "subscription disabled: %s",
                    report.disable_subscription,
                    extra={"subscription_id": job.subscription.id},
                )
            if self._on_attempt is not None:
                result = self._on_attempt(job, report)
                if result is not None:
                    await result

    def _log(self, job: DeliveryJob, report: AttemptReport) -> None:
        level = logging.INFO if report.outcome is DeliveryStatus.DONE else logging.WARNING
        if not log.isEnabledFor(level):
            return  # one line per attempt: not even its fields when it is not wanted
        answer = report.error or (
            f"HTTP {report.status}" if report.status is not None else "accepted"
        )
        log.log(
            level,
            "delivery to %s: %s, %s",
            _shown_target(job.subscription),
            answer,
            report.outcome.value,
            extra={
                "delivery_id": job.delivery.id,
                "subscription_id": job.subscription.id,
                "event_id": job.delivery.event_id,
                "attempt": job.delivery.attempts + 1,
                "latency_ms": report.latency_ms,
            },
        )

    async def attempt(self, job: DeliveryJob) -> AttemptReport:
        """Make one attempt and decide its outcome (does not record it)."""
        attempted_at = self._clock()
        started = time.perf_counter()
        status: int | None = None
        retry_after: float | None = None
        error: str | None = None
        refusal: TargetRefused | None = None  # the SSRF guard's, at connect time
        try:
            built = self.build_request(job, attempted_at)
            request = await built if inspect.isawaitable(built) else built
        except TemplateError as exc:
            return self._template_failed(job, attempted_at, started, exc)
        except FeedbotError as exc:
            # A payload that cannot be built (a broken template) will not build later.
            return AttemptReport(
                attempted_at, 0, None, f"cannot build payload: {exc}", DeliveryStatus.FAILED
            )
        self._template_failures.pop(job.subscription.id, None)
        if isinstance(request, AppriseRequest):
            sent = await self.apprise.send(request.target, request.message)
            return self._decide(
                job, attempted_at, sent.latency_ms, None, sent.error, None, refusal=sent.refusal
            )
        try:
            async with self.session.post(
                job.subscription.url,
                data=request.body,
                headers={"User-Agent": self.settings.user_agent, **request.headers},
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                status = response.status
                answer = await response.content.read(MAX_ANSWER_BYTES)
                retry_after = parse_retry_after(response.headers.get("Retry-After"), attempted_at)
                if not 200 <= status < 300:
                    error = _describe_answer(response, answer)
        except TimeoutError:
            error = f"timed out after {self.settings.timeout:g} s"
        except aiohttp.ClientError as exc:
            refusal = refusal_of(exc)
            error = str(refusal) if refusal is not None else _describe_client_error(exc)
        except OSError as exc:  # the SSRF guard refuses at connect time
            refusal = refusal_of(exc)
            error = str(exc)
        latency_ms = round((time.perf_counter() - started) * 1000)
        return self._decide(
            job, attempted_at, latency_ms, status, error, retry_after, refusal=refusal
        )

    def _template_failed(
        self, job: DeliveryJob, attempted_at: datetime, started: float, exc: TemplateError
    ) -> AttemptReport:
        """An operator's template failed or ran over a limit: a failed attempt,
        retried on the schedule like any other (a time limit may pass on a quieter
        machine); ``template_failures`` of them in a row disable the subscription."""
        subscription_id = job.subscription.id
        streak = self._template_failures.get(subscription_id, 0) + 1
        self._template_failures[subscription_id] = streak
        latency_ms = round((time.perf_counter() - started) * 1000)
        error = f"cannot build payload: {exc}"
        report = self._decide(job, attempted_at, latency_ms, None, error, None)
        if streak < self.settings.template_failures:
            return report
        del self._template_failures[subscription_id]
        return replace(
            report,
            outcome=DeliveryStatus.FAILED,
            next_attempt_at=None,
            disable_subscription=f"its template failed {streak} times in a row; the last: {exc}",
        )

    def _decide(
        self,
        job: DeliveryJob,
        attempted_at: datetime,
        latency_ms: int,
        status: int | None,
        error: str | None,
        retry_after: float | None,
        *,
        refusal: TargetRefused | None = None,
    ) -> AttemptReport:
        verdict = judge(
            self.policy,
            status=status,
            error=error,
            refusal=refusal,
            attempts_made=job.delivery.attempts + 1,
            attempted_at=attempted_at,
            failing_since=job.subscription_failing_since,
            rng=self._rng,
            retry_after=retry_after,
        )
        return AttemptReport(
            attempted_at,
            latency_ms,
            status,
            error,
            verdict.outcome,
            verdict.next_attempt_at,
            verdict.disable_subscription,
        )


class _Load:
    """Attempts in flight, by host and by subscription."""

    def __init__(self) -> None:
        self.hosts: dict[str, int] = {}
        self.subscriptions: dict[str, int] = {}
        self.host_of: dict[str, str] = {}  # subscription -> its host, while it has any

    def add(self, host: str, subscription_id: str) -> None:
        self.hosts[host] = self.hosts.get(host, 0) + 1
        self.subscriptions[subscription_id] = self.subscriptions.get(subscription_id, 0) + 1
        self.host_of[subscription_id] = host

    def remove(self, host: str, subscription_id: str) -> None:
        # Entries go at zero: the maps stay as small as what is in flight.
        self.hosts[host] -= 1
        if not self.hosts[host]:
            del self.hosts[host]
        self.subscriptions[subscription_id] -= 1
        if not self.subscriptions[subscription_id]:
            del self.subscriptions[subscription_id]
            del self.host_of[subscription_id]

    def admission(self, per_host: int, per_subscription: int) -> _Admission:
        return _Admission(
            dict(self.hosts), dict(self.subscriptions), self.host_of, per_host, per_subscription
        )


@dataclass(slots=True)
class _Admission:
    """The limits applied to one claim, on a copy of the load: what the claim
    admits counts against the rest of it."""

    hosts: dict[str, int]
    subscriptions: dict[str, int]
    host_of: dict[str, str]
    per_host: int
    per_subscription: int

    def room(self) -> dict[str, int]:
        """How many more each subscription with attempts in flight may take."""
        return {
            subscription_id: 0
            if self.hosts[self.host_of[subscription_id]] >= self.per_host
            else self.per_subscription - load
            for subscription_id, load in self.subscriptions.items()
        }

    def admit(self, subscription_id: str, url: str) -> bool:
        host = _host_of(url)
        load = self.subscriptions.get(subscription_id, 0)
        if load >= self.per_subscription:
            return False
        # A subscription's first request goes whatever its host's load: the host's
        # slots may all be held by other subscriptions' hanging requests.
        if load and self.hosts.get(host, 0) >= self.per_host:
            return False
        self.subscriptions[subscription_id] = load + 1
        self.hosts[host] = self.hosts.get(host, 0) + 1
        return True


@lru_cache(maxsize=4096)  # a few subscription URLs, asked for on every claim
def _host_of(url: str) -> str:
    """The host a delivery's load counts against: a webhook's host and port; for
    an Apprise URL its service (the tokens that may sit in its host are no key)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"{parts.scheme}:"
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _shown_target(subscription: Subscription) -> str:
    """Where a delivery went, fit for a log line: a webhook's host, an Apprise
    URL in its privacy form."""
    if subscription.shown_url:
        return subscription.shown_url
    return _host_of(subscription.url)


def _describe_answer(response: aiohttp.ClientResponse, answer: bytes) -> str:
    text = f"HTTP {response.status} {response.reason or ''}".strip()
    if 300 <= response.status < 400:
        return f"{text}: redirect to {response.headers.get('Location', '?')} not followed"
    snippet = "".join(
        c if c.isprintable() else " " for c in answer[:200].decode("utf-8", errors="replace")
    ).strip()
    return f"{text}: {snippet}" if snippet else text


def _describe_client_error(exc: aiohttp.ClientError) -> str:
    with contextlib.suppress(Exception):
        if str(exc):
            return f"{exc.__class__.__name__}: {exc}"
    return exc.__class__.__name__
