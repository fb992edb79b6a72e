"""Storing events, topics, source marks and poll history (SQLite or PostgreSQL)."""

from feedbot.store.outbox import (
    AttemptReport,
    Claim,
    Delivery,
    DeliveryJob,
    Outbox,
    delivery_id,
)
from feedbot.store.store import PollRecord, Store, TopicCount, WriteResult

__all__ = [
    "AttemptReport",
    "Claim",
    "Delivery",
    "DeliveryJob",
    "Outbox",
    "PollRecord",
    "Store",
    "TopicCount",
    "WriteResult",
    "delivery_id",
]
