"""The SSRF guard: which addresses a webhook may be sent to, enforced at connect time.

A subscriber's URL is data from outside; without a guard it could point the
deliverer at the machine itself, the private network or the cloud metadata
service. The guard owns three things:

- :func:`classify`: what kind of non-public address an IP is (loopback, private,
  link-local, shared, multicast, reserved, documentation, benchmarking, cloud
  metadata, broadcast, unspecified), looking through the IPv6 forms that carry an
  IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4
  ``2002::/16``). Teredo (``2001::/32``) is refused outright: its embedded client
  address is obfuscated, and no webhook receiver lives behind a Teredo tunnel.
- :class:`TargetPolicy`: the operator's exceptions. ``allow_private`` permits the
  non-public unicast kinds (loopback, private, link-local, shared, reserved,
  documentation, benchmarking), never unspecified, multicast, broadcast or cloud
  metadata; ``allow_cidrs`` permits exactly the networks listed, whatever they hold.
- :func:`make_connector`: an aiohttp ``TCPConnector`` that applies the policy to
  the addresses it actually connects to, so DNS rebinding cannot pass.

How a refusal happens inside aiohttp (3.14):

1. Host names go through the connector's resolver. :class:`GuardedResolver` wraps
   the real one and drops refused addresses from its answer (so they never enter
   aiohttp's DNS cache); when none is left it raises :class:`TargetRefused`, which
   aiohttp wraps as ``ClientConnectorDNSError``.
2. IP literals never reach a resolver: ``TCPConnector._resolve_host`` returns
   them as they are. Every address, literal or resolved, ends up in the
   connector's ``socket_factory`` right before ``connect()``; ours
   (:func:`guarded_socket_factory`) checks it again and raises
   :class:`TargetRefused`, which aiohttp wraps as ``ClientConnectorError``.

Either way the caller gets an ``aiohttp.ClientConnectorError`` whose ``os_error``
is the :class:`TargetRefused` and whose message ends with ours, e.g.
``Cannot connect to host localhost:80 ssl:default [refused: localhost resolves to
127.0.0.1 (loopback), ::1 (loopback)]``; :func:`refusal_of` digs it out. No
packet leaves for a refused address: both checks run before any socket exists.
Legacy numeric IPv4 spellings in URLs (``http://2130706433/``, ``127.1``) are
rejected by aiohttp itself; the same spellings inside a host name that the
system resolver accepts are checked as the address they resolve to.

Use the connector without ``trust_env`` or a proxy: through a proxy, only the
proxy's own address would be checked, and the proxy would resolve the target.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.connector import AddrInfoType
from yarl import URL

from feedbot.errors import ConfigError, TargetRefused

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

__all__ = [
    "AddressKind",
    "Classification",
    "GuardedConnector",
    "GuardedResolver",
    "TargetPolicy",
    "check_url",
    "classify",
    "guarded_socket_factory",
    "make_connector",
    "refusal_of",
]


class AddressKind(StrEnum):
    """Why an address is not a public unicast address."""

    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link-local"
    SHARED = "shared"
    MULTICAST = "multicast"
    BROADCAST = "broadcast"
    UNSPECIFIED = "unspecified"
    RESERVED = "reserved"
    DOCUMENTATION = "documentation"
    BENCHMARKING = "benchmarking"
    METADATA = "cloud metadata"


# Kinds that allow_private does not open: not meaningful TCP destinations, or
# (metadata) never a webhook receiver. Only an explicit allow_cidrs entry does.
_NEVER_BY_ALLOW_PRIVATE = frozenset(
    {AddressKind.UNSPECIFIED, AddressKind.MULTICAST, AddressKind.BROADCAST, AddressKind.METADATA}
)

_K = AddressKind
# First match wins, so the specific entries come before the ranges holding them.
_V4_TABLE: tuple[tuple[IPv4Network, AddressKind], ...] = tuple(
    (IPv4Network(net), kind)
    for net, kind in (
        ("169.254.169.254/32", _K.METADATA),  # AWS, GCP, Azure, OpenStack, ...
        ("169.254.170.2/32", _K.METADATA),  # AWS ECS task metadata
        ("100.100.100.200/32", _K.METADATA),  # Alibaba Cloud
        ("192.0.0.192/32", _K.METADATA),  # Oracle Cloud
        ("168.63.129.16/32", _K.METADATA),  # Azure WireServer (a public address)
        ("0.0.0.0/8", _K.UNSPECIFIED),  # "this network"; 0.0.0.0 reaches the local host
        ("10.0.0.0/8", _K.PRIVATE),
        ("172.16.0.0/12", _K.PRIVATE),
        ("192.168.0.0/16", _K.PRIVATE),
        ("100.64.0.0/10", _K.SHARED),  # carrier-grade NAT
        ("127.0.0.0/8", _K.LOOPBACK),
        ("169.254.0.0/16", _K.LINK_LOCAL),
        ("192.0.0.0/24", _K.RESERVED),  # IETF protocol assignments
        ("192.0.2.0/24", _K.DOCUMENTATION),
        ("198.51.100.0/24", _K.DOCUMENTATION),
        ("203.0.113.0/24", _K.DOCUMENTATION),
        ("192.88.99.0/24", _K.RESERVED),  # former 6to4 relay anycast
        ("198.18.0.0/15", _K.BENCHMARKING),
        ("224.0.0.0/4", _K.MULTICAST),
        ("255.255.255.255/32", _K.BROADCAST),
        ("240.0.0.0/4", _K.RESERVED),
    )
)
_V6_TABLE: tuple[tuple[IPv6Network, AddressKind], ...] = tuple(
    (IPv6Network(net), kind)
    for net, kind in (
        ("::/128", _K.UNSPECIFIED),
        ("::1/128", _K.LOOPBACK),
        ("fd00:ec2::254/128", _K.METADATA),  # AWS IMDS over IPv6
        ("64:ff9b:1::/48", _K.PRIVATE),  # local-use NAT64 (RFC 8215)
        ("100::/64", _K.RESERVED),  # discard-only
        ("2001:db8::/32", _K.DOCUMENTATION),
        ("3fff::/20", _K.DOCUMENTATION),  # RFC 9637
        ("2001:2::/48", _K.BENCHMARKING),
        ("2001::/32", _K.RESERVED),  # Teredo: refused whole, see the module docstring
        ("2001::/23", _K.RESERVED),  # IETF protocol assignments
        ("fc00::/7", _K.PRIVATE),  # unique local
        ("fe80::/10", _K.LINK_LOCAL),
        ("fec0::/10", _K.PRIVATE),  # deprecated site-local
        ("ff00::/8", _K.MULTICAST),
    )
)
_V6_GLOBAL_UNICAST = IPv6Network("2000::/3")
_NAT64 = IPv6Network("64:ff9b::/96")
_TEREDO = IPv6Network("2001::/32")


@dataclass(frozen=True, slots=True)
class Classification:
    """What an address is, and through which IPv6 form its IPv4 address was found."""

    kind: AddressKind
    via: str | None = None  # "IPv4-mapped", "NAT64" or "6to4"
    embedded: IPv4Address | None = None

    def __str__(self) -> str:
        if self.via is None:
            return self.kind.value
        return f"{self.via} {self.embedded}: {self.kind.value}"


def _parse(address: str | IPAddress) -> IPAddress:
    if isinstance(address, IPv4Address | IPv6Address):
        return address
    return ip_address(address)


def embedded_ipv4(address: IPv6Address) -> tuple[str, IPv4Address] | None:
    """The IPv4 address an IPv6 address stands for, with the form's name."""
    if (mapped := address.ipv4_mapped) is not None:
        return "IPv4-mapped", mapped
    if address in _NAT64:
        return "NAT64", IPv4Address(int(address) & 0xFFFFFFFF)
    if (sixtofour := address.sixtofour) is not None:
        return "6to4", sixtofour
    return None


def classify(address: str | IPAddress) -> Classification | None:
    """What kind of non-public address ``address`` is; ``None`` for a public one.

    Raises ``ValueError`` when ``address`` is not an IP address.
    """
    ip = _parse(address)
    if isinstance(ip, IPv4Address):
        for net, kind in _V4_TABLE:
            if ip in net:
                return Classification(kind)
        # Anything IANA lists as not globally reachable that the table missed.
        return None if ip.is_global else Classification(AddressKind.RESERVED)
    if ip.scope_id:
        ip = IPv6Address(int(ip))  # the scope does not change the kind
    if (found := embedded_ipv4(ip)) is not None:
        via, v4 = found
        inner = classify(v4)
        return None if inner is None else Classification(inner.kind, via, v4)
    for net6, kind in _V6_TABLE:
        if ip in net6:
            return Classification(kind)
    return None if ip in _V6_GLOBAL_UNICAST else Classification(AddressKind.RESERVED)


def _parse_cidr(value: str | IPNetwork) -> IPNetwork:
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    try:
        return ip_network(value.strip(), strict=False)
    except ValueError:
        raise ConfigError(
            f"allow_cidrs: {value!r} is not an IP network", field="allow_cidrs"
        ) from None


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Which non-public addresses the operator allows as webhook targets."""

    allow_private: bool = False
    allow_cidrs: tuple[IPNetwork, ...] = ()

    @classmethod
    def build(
        cls, *, allow_private: bool = False, allow_cidrs: Iterable[str | IPNetwork] = ()
    ) -> TargetPolicy:
        """A policy from settings values; a bad CIDR raises ``ConfigError`` naming it."""
        return cls(allow_private, tuple(_parse_cidr(c) for c in allow_cidrs))

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why ``address`` is refused (``"loopback"``, ...), or ``None`` if allowed."""
        try:
            ip = _parse(address)
        except ValueError:
            return "not an IP address"
        found = classify(ip)
        if found is None:
            return None
        if self._in_allowed_cidr(ip, found):
            return None
        if self.allow_private and found.kind not in _NEVER_BY_ALLOW_PRIVATE:
            return None
        return str(found)

    def _in_allowed_cidr(self, ip: IPAddress, found: Classification) -> bool:
        if isinstance(ip, IPv6Address) and ip.scope_id:
            ip = IPv6Address(int(ip))
        candidates: list[IPAddress] = [ip]
        if found.embedded is not None:
            candidates.append(found.embedded)
        return any(
            c in net for c in candidates for net in self.allow_cidrs if c.version == net.version
        )


class GuardedResolver(AbstractResolver):
    """A resolver that answers only with the addresses ``policy`` allows.

    Refused addresses are dropped from the answer; when none is left,
    :class:`TargetRefused` is raised with every refused address and its kind.
    Because the connector connects to what this returns, the address checked is
    the address connected to: a second, rebinding answer is checked again.
    """

    def __init__(
        self, inner: AbstractResolver, policy: TargetPolicy, *, owns_inner: bool = True
    ) -> None:
        self._inner = inner
        self._policy = policy
        self._owns_inner = owns_inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refused: list[tuple[str, str]] = []
        for answer in answers:
            reason = self._policy.refusal(answer["host"])
            if reason is None:
                allowed.append(answer)
            else:
                refused.append((answer["host"], reason))
        if allowed:
            return allowed
        if not refused:
            raise OSError(None, f"{host} resolves to no address")
        raise TargetRefused(host, refused)

    async def close(self) -> None:
        if self._owns_inner:
            await self._inner.close()


def guarded_socket_factory(policy: TargetPolicy) -> Callable[[AddrInfoType], socket.socket]:
    """A ``TCPConnector(socket_factory=...)`` that refuses to create a socket for a
    refused address: the last check before ``connect()``, and the only one IP
    literals get."""

    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        address = str(sockaddr[0])
        reason = policy.refusal(address)
        if reason is not None:
            raise TargetRefused(address, [(address, reason)])
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


class GuardedConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` whose resolver and socket factory enforce a :class:`TargetPolicy`.

    It owns its :class:`GuardedResolver` (and the resolver that one wraps) and
    closes them with itself; a plain ``TCPConnector`` closes only a resolver it
    made.
    """

    def __init__(
        self,
        policy: TargetPolicy,
        *,
        resolver: AbstractResolver | None = None,
        limit: int = 100,
        limit_per_host: int = 0,
        ttl_dns_cache: int = 10,
    ) -> None:
        inner = resolver if resolver is not None else aiohttp.DefaultResolver()
        self._guarded_resolver = GuardedResolver(inner, policy)
        self.policy = policy
        super().__init__(
            resolver=self._guarded_resolver,
            socket_factory=guarded_socket_factory(policy),
            limit=limit,
            limit_per_host=limit_per_host,
            ttl_dns_cache=ttl_dns_cache,
        )

    async def close(self, *, abort_ssl: bool = False) -> None:
        await super().close(abort_ssl=abort_ssl)
        await self._guarded_resolver.close()


def make_connector(
    *,
    allow_private: bool = False,
    allow_cidrs: Iterable[str | IPNetwork] = (),
    limit: int = 100,
    limit_per_host: int = 0,
    resolver: AbstractResolver | None = None,
    ttl_dns_cache: int = 10,
) -> GuardedConnector:
    """A connector that connects only to addresses the policy allows.

    ``allow_cidrs`` entries may be strings (a bad one raises ``ConfigError``).
    ``resolver`` is the real resolver to wrap (default: aiohttp's
    ``DefaultResolver``); the connector closes it. Must be called with a running
    event loop, like ``TCPConnector`` itself.
    """
    policy = TargetPolicy.build(allow_private=allow_private, allow_cidrs=allow_cidrs)
    return GuardedConnector(
        policy,
        resolver=resolver,
        limit=limit,
        limit_per_host=limit_per_host,
        ttl_dns_cache=ttl_dns_cache,
    )


def refusal_of(error: BaseException) -> TargetRefused | None:
    """The :class:`TargetRefused` behind an aiohttp connection error, if that is what it was."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, TargetRefused):
            return current
        seen.add(id(current))
        if isinstance(current, aiohttp.ClientConnectorError):
            current = current.os_error
        else:
            current = current.__cause__ or current.__context__
    return None


def parse_webhook_url(url: str) -> URL:
    """``url`` parsed, if it is an absolute ``http(s)`` URL with a host (and, if it
    has one, a port yarl can read); raises ``ConfigError`` naming the field ``url``
    otherwise."""
    try:
        parsed = URL(url)
        parsed.explicit_port  # noqa: B018 - yarl checks the port when it is read
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"url: {url!r} is not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise ConfigError(f"url: {url!r} is not an absolute http:// or https:// URL")
    return parsed


def check_url(url: str, policy: TargetPolicy) -> None:
    """Check a webhook URL up front, as far as that is possible without DNS.

    Raises ``ConfigError`` naming the field ``url`` for a URL that is not an
    absolute ``http(s)`` URL with a host, and :class:`TargetRefused` for an IP
    literal the policy refuses. A host name is only checked at connect time.
    """
    check_host(parse_webhook_url(url).raw_host, policy)


def check_host(host: str | None, policy: TargetPolicy) -> None:
    """Check the host of a target URL up front (see :func:`check_url`); None: a
    target whose host is not the URL's (a cloud service's fixed endpoint)."""
    if host is None:
        return
    try:
        ip = ip_address(host)
    except ValueError:
        if _looks_numeric(host):
            raise ConfigError(f"url: {host!r} is not a canonical IP address") from None
        return
    reason = policy.refusal(ip)
    if reason is not None:
        raise TargetRefused(host, [(host, reason)])


def _looks_numeric(host: str) -> bool:
    """``2130706433``, ``127.1``, ``0x7f.0.0.1``: IPv4 spellings that ``inet_aton`` takes."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True
