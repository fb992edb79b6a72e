"""WebSub content distribution: the request that pushes one new or changed entry
to a reader subscribed through the hub (README: "Push to readers: WebSub").

A push is a delivery of the outbox like any alert (durable, retried on the
schedule, 410 ends the subscription, redirects are failures); only its body and
headers differ. The body is the subscribed feed's own document (Atom, RSS or JSON
Feed, as its URL says) holding the entry the delivery is about, rendered by the
same code as the served feed, with the feed's ``rel="self"`` and the hub named;
the headers are the feed's ``Content-Type``, the ``Link`` header of the feed, and
``X-Hub-Signature: sha256=...`` when the subscriber gave a ``hub.secret``.
"""

from __future__ import annotations

from datetime import datetime

from feedbot.feeds import FeedSpec, render_feed
from feedbot.feeds.urls import hub_url
from feedbot.model import StoredEvent, Topic
from feedbot.notify.deliver import Request
from feedbot.store import DeliveryJob
from feedbot.websub import hub_signature, link_header, parse_feed_path


def push_request(job: DeliveryJob, base_url: str) -> Request:
    """The request of one push: ``job``'s event as the one entry of its feed."""
    subscription, event = job.subscription, job.event
    if subscription.feed is None or event is None:
        raise ValueError(f"subscription {subscription.id} follows no feed")
    topic = parse_feed_path(subscription.feed)
    if topic.query is not None:
        spec = FeedSpec.for_search(topic.query, base_url, websub=True)
    elif topic.slug is not None:
        name = next((t.name for t in event.topics if t.slug == topic.slug), topic.slug)
        spec = FeedSpec.for_topic(Topic(name=name, slug=topic.slug), base_url, websub=True)
    else:
        spec = FeedSpec.all_events(base_url, websub=True)
    updated: datetime = job.event_updated or job.delivery.created_at
    entry = StoredEvent(event=event, first_seen=updated, updated=updated)
    body = render_feed(topic.fmt, spec, [entry], 1, 1)
    headers = {
        "Content-Type": topic.fmt.media_type,
        "Link": link_header(hub_url(base_url), topic.url(base_url)),
    }
    if subscription.secret:
        headers["X-Hub-Signature"] = hub_signature(subscription.secret, body)
    return Request(body, headers)
