"""The webhook receiver of bench/notify.py, run as its own process.

    python bench/_receiver.py          # prints its port on the first line of stdout
    python bench/_receiver.py 51       # listens on 51 ports: prints them on that line

A keep-alive aiohttp server on 127.0.0.1 that answers every POST under
``/r/<run>/<subscription>`` with 204 and records, per run, a key and the arrival
time (``time.time()``) of each request:

- feedbot's posts are keyed by their ``webhook-id`` header;
- WebSub pushes (an ``X-Hub-Signature`` or a feed document, no webhook-id) by
  ``<subscription>/<the first "latency-N" in the body>`` (bench/latency.py's pages);
- Apprise's ``json://`` posts carry no webhook-id, so they are keyed by
  ``<subscription>/<title>`` (the bench sends the event id as the title);
- a POST to ``/`` is an ntfy publish (what Apprise's ``ntfy://`` sends, for
  feedbot's ``apprise`` format): recorded under the run ``ntfy``, keyed by
  ``<topic>/<title>``, and answered 200 with a message id, as ntfy does.

``GET /stats/<run>`` answers ``{"keys": [...], "times": [...], "pages": [...]}`` for
that run, in arrival order (``pages``: the first "latency-N" in each body, or null),
and forgets it (``?keep=1``: and keeps it); ``GET /count/<run>`` answers how many
requests that run has had, and when the last one arrived. A GET under
``/r/<run>/<subscription>`` with a ``hub.challenge`` echoes it: a WebSub hub's
verification of intent. It runs in a separate process so that it shares
neither the event loop nor the GIL with the sender being measured.

Every port serves the same app and records alike: a feedbot deliverer counts each
host:port as a host of its own (``notify.per_host``), so several ports stand for
several receivers' hosts.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

import uvloop
from aiohttp import web

Records = dict[str, tuple[list[str], list[float], list[str | None]]]
_PAGE = re.compile(rb"latency-[0-9]+")


def make_app() -> web.Application:
    records: Records = {}

    def slot(run: str) -> tuple[list[str], list[float], list[str | None]]:
        found = records.get(run)
        if found is None:
            found = records[run] = ([], [], [])
        return found

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.time()
        run = request.match_info["run"]
        found = _PAGE.search(body)
        page = found.group().decode() if found else None
        key = request.headers.get("webhook-id")
        if key is None and not request.content_type.endswith("json"):
            key = f"{request.match_info['sub']}/{page or '?'}"
        if key is None:  # Apprise: the title is the event id
            title = json.loads(body).get("title", "")
            key = f"{request.match_info['sub']}/{title}"
        keys, times, pages = slot(run)
        keys.append(key)
        times.append(arrived)
        pages.append(page)
        return web.Response(status=204)

    async def publish(request: web.Request) -> web.Response:
        message = json.loads(await request.read())
        arrived = time.time()
        keys, times, pages = slot("ntfy")
        keys.append(f"{message.get('topic', '')}/{message.get('title', '')}")
        times.append(arrived)
        pages.append(None)
        return web.json_response({"id": str(len(keys)), "event": "message"})

    async def stats(request: web.Request) -> web.Response:
        run = request.match_info["run"]
        if request.query.get("keep"):
            keys, times, pages = records.get(run, ([], [], []))
        else:
            keys, times, pages = records.pop(run, ([], [], []))
        return web.json_response({"keys": keys, "times": times, "pages": pages})

    async def count(request: web.Request) -> web.Response:
        _keys, times, _pages = records.get(request.match_info["run"], ([], [], []))
        return web.json_response({"count": len(times), "last": times[-1] if times else None})

    async def verify(request: web.Request) -> web.Response:
        return web.Response(text=request.query.get("hub.challenge", ""))

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/r/{run}/{sub}", receive)
    app.router.add_get("/r/{run}/{sub}", verify)
    app.router.add_get("/stats/{run}", stats)
    app.router.add_get("/count/{run}", count)
    app.router.add_post("/", publish)
    return app


async def serve(ports: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None, keepalive_timeout=75.0)
    await runner.setup()
    for _ in range(ports):
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
    sys.stdout.write(" ".join(str(address[1]) for address in runner.addresses) + "\n")
    sys.stdout.flush()
    # Serve until the parent closes our stdin (or dies).
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    # On uvloop, as a production receiver would be: a receiver that spends less CPU
    # takes less of the machine from the sender being measured (it shares the cores).
    uvloop.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 1))
