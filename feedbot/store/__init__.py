"""Storing events, topics, source marks and poll history (SQLite or PostgreSQL)."""

from feedbot.store.store import PollRecord, Store, TopicCount

__all__ = ["PollRecord", "Store", "TopicCount"]
