"""The one exception tree of feedbot.

Every error feedbot raises on purpose derives from :class:`FeedbotError`, so the
CLI and the daemon can tell "we said no, with a reason" from a bug. Third-party
errors (SQLAlchemy, aiohttp, OS errors) are converted at the boundary of the
package that meets them, with the original chained as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any


class FeedbotError(Exception):
    """Root of every error feedbot raises deliberately."""


class ConfigError(FeedbotError):
    """The configuration file or environment holds a wrong key or value, or a
    subscription a wrong field.

    ``field`` names the field at fault where the code that raised it knows one
    (``"url"``, ``"subscriptions[2].secret"``); the message then starts with it,
    and ``reason`` is what follows (for an error without a field, the message).
    The admin API answers with them; nothing reads them back out of the message.
    """

    def __init__(
        self, message: str, *, field: str | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.field = field
        self.reason = message if reason is None else reason

    @classmethod
    def about(cls, field: str, reason: str) -> ConfigError:
        """The error ``field: reason``, both kept as fields."""
        return cls(f"{field}: {reason}", field=field, reason=reason)


class ParseError(FeedbotError):
    """An archive page could not be turned into an event.

    ``str(error)`` is the one-line ``PATH: reason`` form the CLI prints.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class RequestError(FeedbotError, ValueError):
    """A request feedbot cannot take (a search, a subscription to its hub):
    ``field`` is the parameter at fault, ``reason`` a sentence a user can read
    (the web layer's 400 says both)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    # The default pickling would pass the message alone to the constructor.
    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.reason))


class ArchiveError(FeedbotError):
    """The archive as a whole could not be read (missing folder, unreachable URL)."""


class StorageError(FeedbotError):
    """The store failed (unreachable database, failed migration, broken schema).

    The store raises one of the subclasses below where it can tell which case it
    is; the web layer maps each to its HTTP status in one place.
    """


class NotFoundError(StorageError):
    """A ``kind`` record (``"subscription"``, ...) with the key ``key`` is not in the
    store, for instance because another connection removed it a moment ago."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"no {kind} {key}")
        self.kind = kind
        self.key = key

    def __reduce__(self) -> tuple[type[NotFoundError], tuple[str, str]]:
        return (type(self), (self.kind, self.key))


class _DatabaseRefusal(StorageError):
    """A database error converted at the store boundary: ``where`` names the store
    (its password hidden), ``reason`` is the database's own word on it."""

    def __init__(self, message: str, *, where: str, reason: str) -> None:
        super().__init__(message)
        self.where = where
        self.reason = reason

    # The default pickling passes ``args`` (the message alone) to a constructor whose
    # fields are keyword-only.
    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), self.where, self.reason))


class ConflictError(_DatabaseRefusal):
    """A constraint refused a write: a unique key already holds its values (a row
    another connection stored first)."""


class UnavailableError(_DatabaseRefusal):
    """The database could not be reached or did not answer in time (connection
    refused or lost, a lock held past the timeout): trying again later may work."""


def _rebuild(
    cls: type[_DatabaseRefusal], message: str, where: str, reason: str
) -> _DatabaseRefusal:
    return cls(message, where=where, reason=reason)


class NotifyError(FeedbotError):
    """An alert could not be built or sent (a payload template failed, a body too big)."""


class TemplateLimit(StrEnum):
    """The limit an operator's template ran over (README: "Webhooks")."""

    TIME = "time"  # notify.template_timeout
    MEMORY = "memory"  # notify.template_memory, or a sandboxed operation over the size cap
    OUTPUT = "output"  # the output cap


class TemplateError(NotifyError):
    """An operator's payload template failed when rendered: ``path`` is its file,
    ``line`` the template line where known, ``reason`` what went wrong and ``limit``
    the limit it ran over (``None``: the template itself raised an error)."""

    def __init__(
        self,
        path: str,
        reason: str,
        *,
        line: int | None = None,
        limit: TemplateLimit | None = None,
    ) -> None:
        where = f" line {line}" if line else ""
        super().__init__(f"template {path}{where}: {reason}")
        self.path = path
        self.reason = reason
        self.line = line
        self.limit = limit

    # It crosses from a render worker process; the default pickling would pass the
    # message alone to a constructor that wants the fields.
    def __reduce__(self) -> tuple[Any, ...]:
        return (_template_error, (self.path, self.reason, self.line, self.limit))


def _template_error(
    path: str, reason: str, line: int | None, limit: TemplateLimit | None
) -> TemplateError:
    return TemplateError(path, reason, line=line, limit=limit)


class TargetRefused(NotifyError, OSError):
    """A webhook target resolves to an address the SSRF guard does not allow.

    ``target`` is the host name or address asked for; ``refused`` pairs every
    address refused with the reason (``("127.0.0.1", "loopback")``). Callers test
    the type (``feedbot.notify.ssrf.refusal_of`` finds it behind aiohttp's errors),
    never the message. Also an :class:`OSError`, so that when aiohttp's resolver or
    socket factory raises it, aiohttp wraps it as a ``ClientConnectorError`` (or
    ``ClientConnectorDNSError``) whose ``os_error`` is this exception and whose
    message carries ours: ``refused: example.test resolves to 127.0.0.1 (loopback)``,
    or ``refused: 10.0.0.1 (private)`` for an address asked for itself.
    """

    def __init__(self, target: str, refused: Sequence[tuple[str, str]]) -> None:
        self.target = target
        self.refused = tuple((str(address), str(reason)) for address, reason in refused)
        if len(self.refused) == 1 and self.refused[0][0] == target:
            message = f"refused: {target} ({self.refused[0][1]})"
        else:
            shown = ", ".join(f"{address} ({reason})" for address, reason in self.refused)
            message = f"refused: {target} resolves to {shown}"
        OSError.__init__(self, None, message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    # OSError.__reduce__ would rebuild us with (errno, strerror): keep ours.
    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.target, self.refused))
