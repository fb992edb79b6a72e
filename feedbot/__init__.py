"""feedbot: per-topic Atom feeds and durable webhook alerts for news-event archives."""

__version__ = "0.1.0"
