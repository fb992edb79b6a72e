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
    TopicCount,
    WriteResult,
)

__all__ = [
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
    "WriteResult",
    "delivery_id",
]
