"""The one exception tree of feedbot.

Every error feedbot raises on purpose derives from :class:`FeedbotError`, so the
CLI and the daemon can tell "we said no, with a reason" from a bug. Third-party
errors (SQLAlchemy, aiohttp, OS errors) are converted at the boundary of the
package that meets them, with the original chained as ``__cause__``.
"""

from __future__ import annotations


class FeedbotError(Exception):
    """Root of every error feedbot raises deliberately."""


class ConfigError(FeedbotError):
    """The configuration file or environment holds a wrong key or value."""


class ParseError(FeedbotError):
    """An archive page could not be turned into an event.

    ``str(error)`` is the one-line ``PATH: reason`` form the CLI prints.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ArchiveError(FeedbotError):
    """The archive as a whole could not be read (missing folder, unreachable URL)."""


class StorageError(FeedbotError):
    """The store failed (unreachable database, failed migration, broken schema)."""
