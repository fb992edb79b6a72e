"""The SSRF guard: the address classifier, the policy, and refusals inside aiohttp.

The connection tests use a real aiohttp server on 127.0.0.1 and a real
ClientSession over :func:`make_connector`. Only loopback is ever connected to:
every other address in these tests must be refused before a socket exists,
which is what the guard promises.
"""

from __future__ import annotations

import pickle
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from feedbot.errors import ConfigError, TargetRefused
from feedbot.notify.ssrf import (
    AddressKind,
    GuardedResolver,
    TargetPolicy,
    check_url,
    classify,
    make_connector,
    refusal_of,
)

K = AddressKind


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", K.LOOPBACK),
        ("127.255.255.254", K.LOOPBACK),
        ("10.0.0.1", K.PRIVATE),
        ("172.16.0.1", K.PRIVATE),
        ("172.31.255.255", K.PRIVATE),
        ("192.168.1.1", K.PRIVATE),
        ("100.64.0.1", K.SHARED),
        ("100.127.255.255", K.SHARED),
        ("169.254.1.1", K.LINK_LOCAL),
        ("169.254.169.254", K.METADATA),
        ("169.254.170.2", K.METADATA),
        ("100.100.100.200", K.METADATA),
        ("168.63.129.16", K.METADATA),
        ("0.0.0.0", K.UNSPECIFIED),
        ("0.1.2.3", K.UNSPECIFIED),
        ("224.0.0.1", K.MULTICAST),
        ("239.255.255.250", K.MULTICAST),
        ("255.255.255.255", K.BROADCAST),
        ("240.0.0.1", K.RESERVED),
        ("192.0.0.8", K.RESERVED),
        ("192.88.99.1", K.RESERVED),
        ("192.0.2.1", K.DOCUMENTATION),
        ("198.51.100.7", K.DOCUMENTATION),
        ("203.0.113.9", K.DOCUMENTATION),
        ("198.18.0.1", K.BENCHMARKING),
        ("198.19.255.255", K.BENCHMARKING),
        ("::", K.UNSPECIFIED),
        ("::1", K.LOOPBACK),
        ("::ffff:127.0.0.1", K.LOOPBACK),
        ("::ffff:10.1.2.3", K.PRIVATE),
        ("::ffff:169.254.169.254", K.METADATA),
        ("64:ff9b::7f00:1", K.LOOPBACK),
        ("64:ff9b::a9fe:a9fe", K.METADATA),
        ("64:ff9b::c0a8:101", K.PRIVATE),
        ("64:ff9b:1::1", K.PRIVATE),
        ("2002:7f00:1::1", K.LOOPBACK),
        ("2002:c0a8:101::1", K.PRIVATE),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", K.RESERVED),  # Teredo
        ("2001:db8::1", K.DOCUMENTATION),
        ("3fff::1", K.DOCUMENTATION),
        ("2001:2::1", K.BENCHMARKING),
        ("fc00::1", K.PRIVATE),
        ("fd12:3456::1", K.PRIVATE),
        ("fd00:ec2::254", K.METADATA),
        ("fe80::1", K.LINK_LOCAL),
        ("fe80::1%eth0", K.LINK_LOCAL),
        ("fec0::1", K.PRIVATE),
        ("ff02::1", K.MULTICAST),
        ("100::1", K.RESERVED),
        ("::7f00:1", K.RESERVED),  # IPv4-compatible, deprecated
        ("5f00::1", K.RESERVED),
    ],
)
def test_classify_refuses(address: str, kind: AddressKind) -> None:
    found = classify(address)
    assert found is not None
    assert found.kind is kind


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "172.32.0.1",
        "100.128.0.1",
        "198.20.0.1",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
    ],
)
def test_classify_passes_public_addresses(address: str) -> None:
    assert classify(address) is None


def test_classification_names_the_embedded_address() -> None:
    assert str(classify("::ffff:127.0.0.1")) == "IPv4-mapped 127.0.0.1: loopback"
    assert str(classify("64:ff9b::a9fe:a9fe")) == "NAT64 169.254.169.254: cloud metadata"
    assert str(classify("2002:c0a8:101::1")) == "6to4 192.168.1.1: private"
    assert str(classify("10.0.0.1")) == "private"


def test_classify_rejects_non_addresses() -> None:
    with pytest.raises(ValueError):
        classify("example.org")


def test_default_policy_refuses_every_kind() -> None:
    policy = TargetPolicy()
    assert policy.refusal("127.0.0.1") == "loopback"
    assert policy.refusal("::ffff:10.0.0.1") == "IPv4-mapped 10.0.0.1: private"
    assert policy.refusal("8.8.8.8") is None
    assert policy.refusal("not-an-ip") == "not an IP address"


def test_allow_private_opens_private_kinds_but_not_metadata_or_multicast() -> None:
    policy = TargetPolicy.build(allow_private=True)
    for allowed in ("127.0.0.1", "::1", "10.1.2.3", "192.168.0.1", "fd00::1", "100.64.0.1"):
        assert policy.refusal(allowed) is None, allowed
    for refused in ("169.254.169.254", "fd00:ec2::254", "224.0.0.1", "0.0.0.0", "::"):
        assert policy.refusal(refused) is not None, refused
    assert policy.refusal("255.255.255.255") == "broadcast"


def test_allow_cidrs_opens_exactly_those_networks() -> None:
    policy = TargetPolicy.build(allow_cidrs=["127.0.0.0/8", " 169.254.169.254/32 ", "fd00::/8"])
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::ffff:127.0.0.1") is None  # its IPv4 address is allowed
    assert policy.refusal("169.254.169.254") is None
    assert policy.refusal("fd00::5") is None
    assert policy.refusal("10.0.0.1") == "private"
    assert policy.refusal("::1") == "loopback"


def test_a_bad_cidr_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"allow_cidrs: 'nonsense/8'"):
        TargetPolicy.build(allow_cidrs=["nonsense/8"])


def test_check_url() -> None:
    policy = TargetPolicy()
    check_url("https://hooks.example.org/feedbot?x=1", policy)  # names: checked at connect
    check_url("http://8.8.8.8:8080/", policy)
    with pytest.raises(TargetRefused, match=r"refused: 127\.0\.0\.1 \(loopback\)"):
        check_url("http://127.0.0.1:9000/", policy)
    with pytest.raises(TargetRefused, match=r"IPv4-mapped 127\.0\.0\.1"):
        check_url("http://[::ffff:127.0.0.1]/", policy)
    for bad in ("ftp://example.org/", "example.org/hook", "http:///path", "http://2130706433/"):
        with pytest.raises(ConfigError, match=r"^url: "):
            check_url(bad, policy)
    check_url("http://127.0.0.1:9000/", TargetPolicy(allow_private=True))


# -- inside aiohttp ---------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    port: int
    hits: list[str] = field(default_factory=list)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        state.append(request.path)
        # No keep-alive: every request needs a new connection, hence a new lookup.
        return web.Response(text="ok", headers={"Connection": "close"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Receiver(f"http://127.0.0.1:{port}/", port, state)
    await runner.cleanup()


class FakeResolver(AbstractResolver):
    """Answers from a table; each name's answers are used in turn (to rebind)."""

    def __init__(self, table: dict[str, Sequence[Sequence[str]]]) -> None:
        self.table = {name: list(answers) for name, answers in table.items()}
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = self.table[host]
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        self.closed = True


async def refused(session: aiohttp.ClientSession, url: str) -> TargetRefused:
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        async with session.get(url):
            pass
    refusal = refusal_of(caught.value)
    assert refusal is not None, caught.value
    assert str(refusal) in str(caught.value)  # the reason reaches the caller's message
    return refusal


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("127.0.0.1", "refused: 127.0.0.1 (loopback)"),
        ("10.0.0.1", "refused: 10.0.0.1 (private)"),
        ("169.254.169.254", "refused: 169.254.169.254 (cloud metadata)"),
        ("[::1]", "refused: ::1 (loopback)"),
        ("[::ffff:127.0.0.1]", "(IPv4-mapped 127.0.0.1: loopback)"),
        ("[64:ff9b::7f00:1]", "(NAT64 127.0.0.1: loopback)"),
        ("0.0.0.0", "refused: 0.0.0.0 (unspecified)"),
    ],
)
async def test_ip_literals_are_refused_before_connecting(
    receiver: Receiver, host: str, message: str
) -> None:
    async with aiohttp.ClientSession(connector=make_connector()) as session:
        refusal = await refused(session, f"http://{host}:{receiver.port}/")
    assert message in str(refusal)
    # The fields say it too: the address asked for is the one refused.
    ((address, reason),) = refusal.refused
    assert refusal.target == address
    assert ip_address(address) == ip_address(host.strip("[]"))
    assert str(refusal) == f"refused: {address} ({reason})"
    assert receiver.hits == []


async def test_a_name_resolving_to_loopback_is_refused(receiver: Receiver) -> None:
    async with aiohttp.ClientSession(connector=make_connector()) as session:
        refusal = await refused(session, f"http://localhost:{receiver.port}/")
    assert str(refusal).startswith("refused: localhost resolves to ")
    assert "(loopback)" in str(refusal)
    assert receiver.hits == []


async def test_every_refused_answer_is_named() -> None:
    resolver = FakeResolver({"inside.test": [["127.0.0.1", "10.0.0.1", "fd00:ec2::254"]]})
    async with aiohttp.ClientSession(connector=make_connector(resolver=resolver)) as session:
        refusal = await refused(session, "http://inside.test/")
    assert str(refusal) == (
        "refused: inside.test resolves to 127.0.0.1 (loopback), 10.0.0.1 (private), "
        "fd00:ec2::254 (cloud metadata)"
    )
    assert refusal.target == "inside.test"
    assert refusal.refused == (
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("fd00:ec2::254", "cloud metadata"),
    )


async def test_dns_rebinding_is_refused_at_connect_time(receiver: Receiver) -> None:
    # 127.0.0.1 plays the public address the name first had (allowed through
    # allow_cidrs); then the name rebinds to 127.0.0.2, which is not allowed.
    resolver = FakeResolver({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    connector = make_connector(allow_cidrs=["127.0.0.1/32"], resolver=resolver)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"http://rebind.test:{receiver.port}/first") as response:
            assert response.status == 200
        connector.clear_dns_cache()
        refusal = await refused(session, f"http://rebind.test:{receiver.port}/second")
    assert str(refusal) == "refused: rebind.test resolves to 127.0.0.2 (loopback)"
    assert receiver.hits == ["/first"]
    assert resolver.closed  # the connector owns the resolver it wraps


async def test_a_refused_answer_is_dropped_and_the_allowed_one_used(receiver: Receiver) -> None:
    resolver = FakeResolver({"mixed.test": [["10.0.0.1", "127.0.0.1"]]})
    connector = make_connector(allow_cidrs=["127.0.0.1/32"], resolver=resolver)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"http://mixed.test:{receiver.port}/mixed") as response,
    ):
        assert response.status == 200
    assert receiver.hits == ["/mixed"]


async def test_guarded_resolver_filters_answers() -> None:
    inner = FakeResolver({"mixed.test": [["8.8.8.8", "127.0.0.1", "::ffff:10.0.0.1"]]})
    guarded = GuardedResolver(inner, TargetPolicy())
    answers = await guarded.resolve("mixed.test", 443)
    assert [a["host"] for a in answers] == ["8.8.8.8"]


@pytest.mark.parametrize(
    "connector_args",
    [{"allow_private": True}, {"allow_cidrs": ["127.0.0.0/8"]}],
)
async def test_the_operator_can_allow_loopback(
    receiver: Receiver, connector_args: dict[str, object]
) -> None:
    connector = make_connector(**connector_args)  # type: ignore[arg-type]
    async with aiohttp.ClientSession(connector=connector) as session:
        for url in (receiver.url, f"http://localhost:{receiver.port}/by-name"):
            async with session.get(url) as response:
                assert response.status == 200
    assert receiver.hits == ["/", "/by-name"]


async def test_allow_private_still_refuses_metadata() -> None:
    async with aiohttp.ClientSession(connector=make_connector(allow_private=True)) as session:
        refusal = await refused(session, "http://169.254.169.254/latest/meta-data/")
    assert "cloud metadata" in str(refusal)


def test_target_refused_is_an_os_error_with_our_message() -> None:
    error = TargetRefused("x", [("127.0.0.1", "loopback")])
    assert isinstance(error, OSError)
    assert error.strerror == str(error) == "refused: x resolves to 127.0.0.1 (loopback)"
    # It crosses from delivery worker processes with its fields.
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.target, copy.refused, str(copy)) == (
        TargetRefused,
        "x",
        (("127.0.0.1", "loopback"),),
        str(error),
    )
