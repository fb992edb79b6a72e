"""A TLS-terminating reverse proxy on loopback: feedbot at an ``https://`` base URL.

What this module owns: a throwaway certificate authority (``trustme``), a server
certificate for 127.0.0.1 it signs, and an aiohttp server that answers HTTPS on
127.0.0.1 (port 0) and passes every request on, byte for byte, to feedbot's plain
HTTP listener -- the shape of a deployment behind nginx or a load balancer, with
``server.base_url`` set to the proxy's URL.

Why the WebSub tests need it: a third-party subscriber may refuse to send
``hub.secret`` to a hub that is not reached over HTTPS (WebSub 5.1 says the secret
SHOULD only be sent over HTTPS, and flask-websub enforces it), so signed pushes
can only be tested with the hub behind TLS. The subscriber trusts the CA through
``REQUESTS_CA_BUNDLE`` (:attr:`TlsFront.ca_file`); the tests' own aiohttp
requests through :attr:`TlsFront.client_ssl`.

The upstream is a mutable attribute, so a daemon restarted on a new port (after a
kill -9) is reached at the same public URL, as behind a real proxy.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import trustme
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

# Hop-by-hop headers (RFC 9110 7.6.1) and the framing ones aiohttp sets itself for
# the body it sends: passing them on would describe the wrong connection.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


@dataclass
class TlsFront:
    """The proxy's public URL and what a client needs to trust it."""

    url: str
    ca_file: Path
    client_ssl: ssl.SSLContext
    upstream: str = ""  # feedbot's http://127.0.0.1:PORT; set once it listens
    forwarded: list[str] = field(default_factory=list)  # "METHOD /path?query", in order


def _passed_on(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in _HOP_BY_HOP:
            kept.add(name, value)
    return kept


@asynccontextmanager
async def running_tls_front(folder: Path) -> AsyncIterator[TlsFront]:
    """An HTTPS proxy on 127.0.0.1, its CA written to ``folder/ca.pem``."""
    ca = trustme.CA()
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
    client_ssl = ssl.create_default_context()
    ca.configure_trust(client_ssl)
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    # auto_decompress=False: a gzip body reaches the client as feedbot sent it, its
    # Content-Encoding still true. No cookie jar: a proxy keeps no state.
    upstream_session = aiohttp.ClientSession(
        auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    )
    front = TlsFront(url="", ca_file=ca_file, client_ssl=client_ssl)

    async def forward(request: web.Request) -> web.StreamResponse:
        if not front.upstream:
            return web.Response(status=502, text="no upstream yet\n")
        front.forwarded.append(f"{request.method} {request.path_qs}")
        headers = _passed_on(request.headers)
        headers["X-Forwarded-Proto"] = "https"
        headers["X-Forwarded-For"] = request.remote or ""
        try:
            async with upstream_session.request(
                request.method,
                front.upstream + request.path_qs,
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
            ) as answer:
                body = await answer.read()
                return web.Response(
                    status=answer.status, headers=_passed_on(answer.headers), body=body
                )
        except aiohttp.ClientError as exc:
            # The daemon is down (a test killed it): what a real proxy answers.
            return web.Response(status=502, text=f"upstream unreachable: {exc}\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl)
    await site.start()
    front.url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield front
    finally:
        await runner.cleanup()
        await upstream_session.close()
