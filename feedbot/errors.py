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


class NotifyError(FeedbotError):
    """An alert could not be built or sent (a payload template failed, a body too big)."""


class TargetRefused(NotifyError, OSError):
    """A webhook target resolves to an address the SSRF guard does not allow.

    Also an :class:`OSError`, so that when aiohttp's resolver or socket factory
    raises it, aiohttp wraps it as a ``ClientConnectorError`` (or
    ``ClientConnectorDNSError``) whose ``os_error`` is this exception and whose
    message carries ours: ``refused: example.test resolves to 127.0.0.1 (loopback)``.
    """

    def __init__(self, message: str) -> None:
        OSError.__init__(self, None, message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    # OSError.__reduce__ would rebuild us with (errno, strerror): keep ours.
    def __reduce__(self) -> tuple[type[TargetRefused], tuple[str]]:
        return (type(self), (self.message,))
