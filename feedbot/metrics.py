"""Prometheus metrics: what the daemon counts, in one registry per daemon.

The parts that do the work (the ingest pipeline, the deliverer, the web app)
know nothing of Prometheus: the daemon records their results here (a poll's
counts, an attempt's report), and the web layer counts its own requests. The
outbox backlog is read from the store at scrape time by :meth:`Metrics.refresh`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from feedbot.clock import utc_now
from feedbot.ingest import PollResult
from feedbot.model import DeliveryStatus
from feedbot.notify.workers import Outcome
from feedbot.store import WEBSUB_STATES, AttemptReport, DeliveryJob, Store

CONTENT_TYPE = CONTENT_TYPE_LATEST

_OUTCOMES = {
    DeliveryStatus.DONE: "delivered",
    DeliveryStatus.PENDING: "retry",
    DeliveryStatus.FAILED: "failed",
}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter("feedbot_polls", "Archive polls, by status", ["status"], registry=r)
        self.pages = Counter("feedbot_pages", "Pages ingested, by result", ["result"], registry=r)
        self.last_poll = Gauge(
            "feedbot_last_poll_timestamp_seconds", "When the last poll ended", registry=r
        )
        self.archive_watch = Gauge(
            "feedbot_archive_watch",
            "1 while the folder watch is in place (a page written from then on is seen)",
            registry=r,
        )
        self.feed_requests = Counter(
            "feedbot_feed_requests",
            "Feed requests, by format and HTTP status",
            ["format", "status"],
            registry=r,
        )
        self.deliveries = Counter(
            "feedbot_deliveries", "Delivery attempts, by outcome", ["outcome"], registry=r
        )
        self.delivery_latency = Histogram(
            "feedbot_delivery_latency_seconds",
            "Time from an event being stored to its alert's 2xx",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 86400),
            registry=r,
        )
        self.subscription_failures = Counter(
            "feedbot_subscription_failures",
            "Failed delivery attempts, by subscription",
            ["subscription"],
            registry=r,
        )
        self.backlog = Gauge(
            "feedbot_outbox_backlog", "Deliveries waiting, by status", ["status"], registry=r
        )
        self.websub = Gauge(
            "feedbot_websub_subscriptions",
            "Readers subscribed through the WebSub hub, by state",
            ["state"],
            registry=r,
        )

    def record_poll(self, result: PollResult | None, *, ended_at: float) -> None:
        self.polls.labels("ok" if result is not None else "failed").inc()
        self.last_poll.set(ended_at)
        if result is not None:
            self.pages.labels("new").inc(result.new)
            self.pages.labels("updated").inc(result.updated)
            self.pages.labels("unchanged").inc(result.unchanged)
            self.pages.labels("rejected").inc(len(result.rejected))

    def record_attempt(self, job: DeliveryJob, report: AttemptReport) -> None:
        self.record_outcome(Outcome.of(job, report))

    def record_outcome(self, outcome: Outcome) -> None:
        """One attempt, made here or by a delivery worker process."""
        self.deliveries.labels(_OUTCOMES[outcome.status]).inc()
        if outcome.status is DeliveryStatus.DONE:
            self.delivery_latency.observe(outcome.seconds)
        else:
            self.subscription_failures.labels(outcome.subscription_id).inc()

    async def refresh(self, store: Store) -> None:
        for status in (DeliveryStatus.PENDING, DeliveryStatus.FAILED):
            self.backlog.labels(status.value).set(await store.outbox.count(status))
        counts = await store.subscriptions.websub_counts(utc_now())
        for state in WEBSUB_STATES:
            self.websub.labels(state).set(counts.get(state, 0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
