"""Storing events, topics, source marks and poll history (SQLite or PostgreSQL)."""

from feedbot.store.outbox import (
    AttemptReport,
    Claim,
    Delivery,
    DeliveryJob,
    Outbox,
    delivery_id,
)
from feedbot.store.store import (
    Lookup,
    Moved,
    PollRecord,
    Removed,
    Store,
    Tombstone,
    WriteResult,
)
from feedbot.store.subscriptions import WEBSUB_STATES, WebSubLimitReached, WebSubListing
from feedbot.store.topic_list import TopicCount, TopicList

__all__ = [
    "WEBSUB_STATES",
    "AttemptReport",
    "Claim",
    "Delivery",
    "DeliveryJob",
    "Lookup",
    "Moved",
    "Outbox",
    "PollRecord",
    "Removed",
    "Store",
    "Tombstone",
    "TopicCount",
    "TopicList",
    "WebSubLimitReached",
    "WebSubListing",
    "WriteResult",
    "delivery_id",
]
