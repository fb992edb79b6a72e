"""Apprise URLs: checking one, showing it without its secrets, and sending a
message to it.

The one module that imports :mod:`apprise` (the ``apprise`` payload format: mail,
Telegram, Matrix, ntfy and a hundred more services, each named by a URL). Its
shapes (plugins, formats, its logger) stay in here; the rest of feedbot sees
:class:`AppriseTarget`, :class:`AppriseOutcome` and :class:`AppriseSender`.

- :func:`parse_apprise_url` loads the URL's plugin, to refuse a URL Apprise cannot
  use (with Apprise's own reason) and to learn what a message to it must fit: its
  body format, its title and body limits, and the host it connects to.
- Apprise blocks, so :class:`AppriseSender` sends from a bounded pool of threads,
  each attempt within ``timeout``; the plugin's socket timeouts are cut to
  ``timeout`` too, so a server that never answers cannot hold a thread for ever.
  Every attempt loads a fresh plugin: plugins keep state between sends (a
  throttle clock that makes a second send within 5.5 s sleep) and are not safe to
  share between threads.
- The SSRF guard. Apprise opens its own sockets (requests, smtplib), out of reach
  of the connector of :mod:`feedbot.notify.ssrf`. Where a plugin connects to a
  host its URL names (a mail server, a self-hosted ntfy, Matrix or Gotify,
  ``json://``), that host is resolved before each attempt, and the attempt is
  refused, before any socket to it exists, when the policy refuses any of its
  addresses. The plugin resolves the name again when it connects, so a name
  whose answers change in between (DNS rebinding) is not caught; HTTP
  redirects, which could lead anywhere, are turned off. A cloud service's fixed
  endpoint (Telegram, Discord, Pushover, Mailgun) is not checked.
- Apprise's log is where it says why something failed. While a parse or an
  attempt runs, a filter on the ``apprise`` logger takes that thread's records
  (Apprise's ``LogCapture`` is process-wide: concurrent attempts would mix) and
  keeps them out of the process's log, where a URL or part of a token in them
  would land; they come back as the refusal's reason or the attempt's error with
  the URL's secrets masked.

Apprise 2.3.0 itself: ``Apprise.notify`` hands a service with a time limit (the
default ``service_timeout`` of 60 s) to a process-wide pool of threads of its
own, where neither our bound on threads nor the per-thread log capture would
reach; assets here set ``service_timeout=0`` and ``async_mode=False``, which keep
the call in the calling thread, and the time limit is ours.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
import unicodedata
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from ipaddress import ip_address
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise

from feedbot.errors import ConfigError, TargetRefused
from feedbot.notify.apprise_messages import BODY_FORMATS, AppriseMessage, BodyFormat
from feedbot.notify.formats import fit
from feedbot.notify.ssrf import TargetPolicy
from feedbot.redact import redact

__all__ = [
    "AppriseMessage",
    "AppriseOutcome",
    "AppriseSender",
    "AppriseTarget",
    "Resolver",
    "parse_apprise_url",
    "redact_apprise_url",
    "resolve_host",
]

# The longest error text an outcome carries (Apprise's lines for one attempt).
MAX_ERROR_CHARS = 500
_MASK = "***"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# Secrets shorter than this are not masked: a two-letter word would garble the
# text it is taken out of, and holds little of a token.
_SECRET_MIN = 4
# Schemas whose "host" token is not where the plugin connects: a mail domain or
# an account handed to the vendor's fixed API (api.mailgun.net, ...).
_HOST_IS_ACCOUNT = frozenset({"mailgun", "sparkpost", "sendpulse", "smtp2go", "wechat"})
# Schemas where a host without a dot is an account name under the vendor's own
# domain (xmatters://key@acme posts to acme.xmatters.com); with one, the host.
_BARE_HOST_IS_ACCOUNT = frozenset({"xmatters"})
# A plugin's ``mode`` in which it posts to the vendor's service whatever the URL's
# host says (ntfy://topic and fluxer.app: "cloud"; notica, notifico: "official";
# Matrix through t2bot.io: "t2bot").
_CLOUD_MODES = frozenset({"cloud", "official", "t2bot"})
# Apprise's NotifyFormat values, as a message's body format. A plugin that
# resolved to another (none does in 2.3.0) is sent text, which every one takes.
_FORMATS: dict[str, BodyFormat] = {name: name for name in BODY_FORMATS}


# -- Apprise's log, per thread ----------------------------------------------------------


class _ThreadLog(logging.Filter):
    """Takes the ``apprise`` logger's records of the threads that asked (see
    :func:`_apprise_log`): a filter on the logger itself, so it sees every record
    before any handler does, and can keep it out of them."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        lines: list[str] | None = getattr(self._local, "lines", None)
        if lines is None:
            return True  # not ours: Apprise used by someone else, logged as it is
        if record.levelno >= logging.WARNING:
            lines.append(record.getMessage())
        return False

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        outer = getattr(self._local, "lines", None)
        lines: list[str] = []
        self._local.lines = lines
        try:
            yield lines
        finally:
            self._local.lines = outer


@cache
def _thread_log() -> _ThreadLog:
    log = _ThreadLog()
    logging.getLogger(apprise.LOGGER_NAME).addFilter(log)
    return log


@contextmanager
def _apprise_log() -> Iterator[list[str]]:
    """The warnings and errors Apprise logs in this thread meanwhile (none of
    its records reach the process's log meanwhile). Records below the
    ``apprise`` logger's level are never made: its level is the application's."""
    with _thread_log().capture() as lines:
        yield lines


# -- what Apprise says of its schemas ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Schema:
    """What :meth:`apprise.Apprise.details` says of one schema: whether its URLs
    name a host (its template tokens hold one), and which URL arguments are not
    secrets (``private`` false: ``format``, ``mode``, ``smtp``, ...)."""

    has_host: bool
    public_args: frozenset[str]


@cache
def _schemas() -> dict[str, _Schema]:
    """Every schema Apprise knows, disabled ones too (their refusal says so).

    Asking loads every plugin module, once: before any URL is loaded (here,
    :func:`_load` asks first, and every target a sender gets was loaded by it),
    so that loading never happens in a pool thread. Apprise 2.3.0's mail plugin imports the standard
    ``imghdr`` module, whose import warns of its removal in Python 3.13: the
    deprecation notices of Apprise's own modules are silenced while loading.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"apprise(\.|$)")
        known = apprise.Apprise().details(show_disabled=True)
    found: dict[str, _Schema] = {}
    for entry in known["schemas"]:
        details = entry["details"]
        public = frozenset(
            str(name) for name, arg in details["args"].items() if arg.get("private") is False
        )
        schema = _Schema("host" in details["tokens"], public)
        for protocol in (*(entry["protocols"] or ()), *(entry["secure_protocols"] or ())):
            found[str(protocol).lower()] = schema
    return found


def _asset() -> apprise.AppriseAsset:
    """The settings of every plugin loaded here: no redirects (a redirect could
    lead past the SSRF guard), no time limit and no threads of Apprise's own (see
    the module docstring), secrets masked in Apprise's log lines."""
    return apprise.AppriseAsset(
        async_mode=False, service_timeout=0, http_redirects=False, secure_logging=True
    )


def _load(url: str) -> tuple[apprise.NotifyBase | None, list[str]]:
    """The plugin for ``url`` (None when Apprise refuses it) and what Apprise logged."""
    _schemas()
    with _apprise_log() as lines:
        plugin = apprise.Apprise.instantiate(url, asset=_asset())
    return plugin, lines


# -- masking secrets --------------------------------------------------------------------


def _scheme_of(text: str) -> str | None:
    scheme, found, _rest = text.partition("://")
    return scheme.lower() if found and _SCHEME.fullmatch(scheme) else None


def _secrets_in(url: str) -> list[str]:
    """The parts of ``url`` that may be a credential, longest first: its user
    info, its path segments, its host when that is no host name (Telegram's bot
    token sits there) and every URL argument Apprise does not call public."""
    try:
        parts = urlsplit(url)
    except ValueError:
        _scheme, _sep, rest = url.partition("://")
        return [rest] if rest else []
    found: list[str] = []
    userinfo, _at, host = parts.netloc.rpartition("@")
    found += [userinfo, *userinfo.split(":")]
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if "." not in name and name.lower() != "localhost" and not name.startswith("["):
        found += [host, *host.split(":")]
    found += parts.path.split("/")
    schema = _schemas().get(parts.scheme.lower())
    public = schema.public_args if schema is not None else frozenset()
    found += [value for key, value in parse_qsl(parts.query) if key.lower() not in public]
    found += [unquote(part) for part in found]
    return sorted({s for s in found if len(s) >= _SECRET_MIN}, key=len, reverse=True)


def _masked(text: str, url: str, shown: str) -> str:
    """``text`` (Apprise's words on ``url``) fit to show: the URL as given
    replaced by ``shown``, its secrets and any URL password by ``***``."""
    text = text.replace(url, shown)
    for secret in _secrets_in(url):
        text = text.replace(secret, _MASK)
    return redact(text)


def _shown_unparsed(text: str) -> str:
    scheme = _scheme_of(text)
    return f"{scheme}://{_MASK}" if scheme else _MASK


def redact_apprise_url(url: str) -> str:
    """``url`` fit to show: Apprise's privacy form (tokens cut to their first and
    last character, passwords hidden), or ``scheme://***`` when Apprise cannot
    load it; never the text as given."""
    text = url.strip()
    plugin, _lines = _load(text)
    if plugin is None:
        return _shown_unparsed(text)
    return _privacy_url(plugin)


def _privacy_url(plugin: apprise.NotifyBase) -> str:
    """The plugin's ``url(privacy=True)`` (tokens cut to their first and last
    character), with any password left in it masked all the same."""
    # URLBase.url has no annotations in Apprise 2.3.0.
    return redact(str(plugin.url(privacy=True)))  # type: ignore[no-untyped-call]


# -- the target -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppriseTarget:
    """An Apprise URL as Apprise loads it.

    ``url`` is the URL as given (stripped): it holds the secrets, so it is used to
    send and never shown; ``redacted_url`` is what to show. ``body_format`` is the
    format the plugin sends (a message is rendered in it), ``title_max`` and
    ``body_max`` its limits (0: no titles, no body limit). ``network_host`` and
    ``port`` are where the plugin connects when the URL names it (a mail server,
    a self-hosted service), None for a cloud service's fixed endpoint.
    """

    url: str
    redacted_url: str
    service: str
    body_format: BodyFormat
    title_max: int
    body_max: int
    network_host: str | None
    port: int | None


def _refuse(reason: str) -> ConfigError:
    return ConfigError.about("url", reason)


def _unusable(text: str) -> str | None:
    """Why ``text`` cannot be an Apprise URL before Apprise looks at it, or None."""
    if not text:
        return "an Apprise URL is required"
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in text):
        return "an Apprise URL holds no whitespace or control characters"
    scheme = _scheme_of(text)
    if scheme in ("http", "https"):
        # Apprise has no http:// schema (its json://, form:// and xml:// post to a
        # URL); feedbot posts to a plain webhook itself, signed.
        return (
            'an http:// or https:// URL is a plain webhook: use format "json" '
            "(or slack, discord) for it"
        )
    if scheme is None:
        return "not an Apprise URL (service://...)"
    if scheme not in _schemas():
        return f"no Apprise service is called {scheme}://"
    return None


def _network_host(plugin: apprise.NotifyBase, schema: str) -> str | None:
    """The host the plugin connects to, when it is the URL's; None for a cloud
    service (a schema whose URLs name no host, a host that names an account,
    a plugin in its cloud mode)."""
    info = _schemas().get(schema)
    if info is None or not info.has_host or schema in _HOST_IS_ACCOUNT:
        return None
    if str(getattr(plugin, "mode", "")).lower() in _CLOUD_MODES:
        return None
    # A mail plugin connects to its SMTP server: the URL's smtp= argument, the
    # server of a provider it knows the domain of (smtp.gmail.com), or else the
    # domain itself; the plugin works that out when loaded and keeps it as
    # smtp_host. Every other plugin connects to its host.
    host = getattr(plugin, "smtp_host", None) or plugin.host
    if not isinstance(host, str) or not host.strip("[]"):
        return None  # ntfy://topic and the like: the vendor's own server
    host = host.strip("[]").lower()
    if schema in _BARE_HOST_IS_ACCOUNT and "." not in host:
        return None
    return host


def _is_local_name(host: str | None) -> bool:
    """Whether a URL's host names this machine or an address (never a token)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def parse_apprise_url(url: str) -> AppriseTarget:
    """``url`` checked and loaded as Apprise loads it; a URL Apprise cannot use
    (or an http(s) URL, whitespace or control characters in it, a port out of
    range) raises ``ConfigError`` naming the field ``url`` and the reason, in
    Apprise's words where they are its, with the URL's secrets masked."""
    text = url.strip()
    reason = _unusable(text)
    if reason is not None:
        raise _refuse(reason)
    plugin, lines = _load(text)
    if plugin is None:
        said = "; ".join(lines) or "it does not load"
        raise _refuse(f"Apprise cannot use it: {_masked(said, text, _shown_unparsed(text))}")
    port = plugin.port
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise _refuse(f"port {port} is out of range")
    written = urlsplit(text)
    if written.netloc.endswith(":"):
        raise _refuse("the port after ':' is missing")
    # The URL's scheme picked the plugin; the plugin's own ``schema`` may say
    # something else by now (Gotify's says https).
    schema = _scheme_of(text)
    assert schema is not None  # _unusable refuses a URL without one
    network_host = _network_host(plugin, schema)
    if network_host is None and _is_local_name(written.hostname):
        # Apprise reads some URLs it cannot place as its cloud service's
        # (ntfy://127.0.0.1:/t is ntfy.sh's topic "t"): refuse rather than send
        # what was meant for a server here to a public one.
        raise _refuse(
            f"Apprise reads this URL as {plugin.service_name}'s public service, "
            f"not as a server at {written.hostname}"
        )
    return AppriseTarget(
        url=text,
        redacted_url=_privacy_url(plugin),
        service=str(plugin.service_name),
        body_format=_FORMATS.get(plugin.resolve_format().value, "text"),
        title_max=max(0, int(plugin.title_maxlen)),
        body_max=max(0, int(plugin.body_maxlen)),
        network_host=network_host,
        port=port if isinstance(port, int) else None,
    )


# -- sending ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppriseOutcome:
    """One attempt: ``ok`` when Apprise reports the service took it; else
    ``error`` says why (Apprise's words, secrets masked, at most
    :data:`MAX_ERROR_CHARS`) and ``refusal`` is the SSRF guard's when it refused."""

    ok: bool
    error: str | None
    refusal: TargetRefused | None
    latency_ms: int


Resolver = Callable[[str, int | None], Awaitable[Sequence[str]]]


async def resolve_host(host: str, port: int | None) -> list[str]:
    """The addresses ``host`` resolves to: ``getaddrinfo``, on the loop's resolver
    thread (asyncio's default executor, libuv's pool under uvloop)."""
    answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(answer[4][0]) for answer in answers))


def _attempt(
    url: str, message: AppriseMessage, timeout: float, started: threading.Event
) -> tuple[bool, list[str]]:
    """One send, in a pool thread: a fresh plugin for ``url``, its socket timeouts
    cut to ``timeout`` and redirects off whatever its URL says, then
    ``Apprise.notify``. Returns whether it was taken and what Apprise logged;
    sets ``started`` first."""
    started.set()
    with _apprise_log() as lines:
        asset = _asset()
        plugin = apprise.Apprise.instantiate(url, asset=asset)
        if plugin is None:
            return False, lines
        plugin.socket_connect_timeout = min(plugin.socket_connect_timeout, timeout)
        plugin.socket_read_timeout = min(plugin.socket_read_timeout, timeout)
        plugin.redirects = False
        notifier = apprise.Apprise(asset=asset)
        notifier.add(plugin)
        result = notifier.notify(
            body=message.body, title=message.title, body_format=message.body_format
        )
        return bool(result), lines


class AppriseSender:
    """Sends messages to Apprise URLs, at most ``max_workers`` at once, each
    attempt within ``timeout`` seconds, to hosts ``policy`` allows (default: no
    private, loopback or link-local ones). ``resolve`` finds a host's addresses
    (tests give their own)."""

    def __init__(
        self,
        max_workers: int = 4,
        timeout: float = 10.0,
        policy: TargetPolicy | None = None,
        resolve: Resolver = resolve_host,
    ) -> None:
        self.max_workers = max_workers
        self.timeout = timeout
        self.policy = policy if policy is not None else TargetPolicy.build()
        self._resolve = resolve
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="apprise")
        _thread_log()  # installed before the first thread logs
        # Apprise's plugins (25 MB, a quarter of a second) are loaded by the first
        # parse_apprise_url, on the caller's thread, which every target comes
        # from: not here, where every delivering process would pay for them.

    async def refusal(self, target: AppriseTarget) -> TargetRefused | None:
        """The guard's refusal of ``target``: every address of its host that the
        policy refuses (an IP literal is its own address); None when allowed or
        when the plugin connects to a fixed cloud endpoint. Raises ``OSError``
        when the host does not resolve."""
        host = target.network_host
        if host is None:
            return None
        try:
            addresses: Sequence[str] = [str(ip_address(host))]
        except ValueError:
            addresses = await self._resolve(host, target.port)
            if not addresses:
                raise OSError(None, f"{host} resolves to no address") from None
        refused = [(a, reason) for a in addresses if (reason := self.policy.refusal(a))]
        return TargetRefused(host, refused) if refused else None

    async def send(self, target: AppriseTarget, message: AppriseMessage) -> AppriseOutcome:
        """One attempt to send ``message`` to ``target``; never raises for the
        target's failure (an outcome says it)."""
        started = time.perf_counter()

        def outcome(error: str | None, refusal: TargetRefused | None = None) -> AppriseOutcome:
            latency_ms = round((time.perf_counter() - started) * 1000)
            return AppriseOutcome(error is None, error, refusal, latency_ms)

        try:
            refusal = await asyncio.wait_for(self.refusal(target), self.timeout)
        except TimeoutError:
            return outcome(f"cannot resolve {target.network_host}: no answer in {self.timeout:g} s")
        except OSError as exc:
            return outcome(f"cannot resolve {target.network_host}: {exc.strerror or exc}")
        if refusal is not None:
            return outcome(str(refusal), refusal)
        loop = asyncio.get_running_loop()
        running = threading.Event()
        job = loop.run_in_executor(self._pool, _attempt, target.url, message, self.timeout, running)
        try:
            ok, lines = await asyncio.wait_for(job, self.timeout)
        except TimeoutError:
            # A job still queued is cancelled, and never runs; one running ends
            # with its socket timeouts, its result unread.
            if not running.is_set():
                waited = f"waited {self.timeout:g} s for one of {self.max_workers} Apprise threads"
                return outcome(f"{target.service}: {waited}")
            return outcome(f"{target.service}: no answer in {self.timeout:g} s")
        except Exception as exc:  # a bug in a plugin; Apprise catches most itself
            said = f"{target.service}: {exc.__class__.__name__}: {exc}"
            return outcome(self._error(target, said))
        if ok:
            return outcome(None)
        said = "; ".join(lines) or f"{target.service} did not take the notification"
        return outcome(self._error(target, said))

    @staticmethod
    def _error(target: AppriseTarget, said: str) -> str:
        return fit(_masked(said, target.url, target.redacted_url), MAX_ERROR_CHARS)

    async def aclose(self) -> None:
        """Stop taking attempts: queued ones are cancelled, running ones end on
        their own (their socket timeouts bound them); nothing waits for them."""
        self._pool.shutdown(wait=False, cancel_futures=True)
