"""A WebSub subscriber nobody on this team wrote, as a real HTTP server on loopback.

What this module owns: running the subscriber of ``flask-websub`` (PyPI, pinned in
the ``test`` extra) in its own process, and the client the tests drive it with.

``python -m tests.websub_subscriber STATE_DIR`` serves a Flask app on 127.0.0.1,
port 0, and prints ``websub subscriber listening on URL``. In it, the library's
own code does every step of WebSub that a subscriber does:

- discovery: ``flask_websub.subscriber.discover`` GETs the feed (with
  ``requests``) and reads the hub and the topic from its ``Link`` headers (or the
  document's ``<link>``/``<atom:link>``);
- the subscription request: ``Subscriber.subscribe`` POSTs the form to the hub
  (refusing to send a secret to a hub that is not HTTPS; it makes up one itself
  when none is given and the hub is HTTPS) and expects a 202;
- verification of intent: the library's blueprint answers the hub's GET at
  ``/callbacks/<callback_id>`` -- the challenge, only for a request it made;
- content distribution: the blueprint takes the hub's POST, checks
  ``X-Hub-Signature`` with the secret, and calls the listeners only when it holds.

Around that, this harness only records and steers, through ``/control/*``:
``subscribe`` (a feed URL, a lease, an optional secret), ``unsubscribe``,
``hold`` (answer a callback's pushes with a status, before the library sees
them: a subscriber that is down) and ``state`` (every verification GET and push
POST the callbacks got, with their headers, bodies and answers, and for each
push whether the library accepted it, i.e. verified its signature).

A subprocess, not a thread: Flask, ``requests`` and their blocking I/O stay out
of the tests' event loop, and the library runs as it would in an application.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from flask import Flask

# Not tests.conftest's: importing it would load pytest, the store and feedbot into
# the subscriber's process, which needs none of them.
REPO = Path(__file__).resolve().parents[1]

_LISTENING = re.compile(r"websub subscriber listening on (http://\S+)")
CALLBACKS = "/callbacks"
# Generous: the library's default (3 s) is for a hub far away, not for one on a
# loaded test machine, where a slow answer must not read as a refusal.
REQUEST_TIMEOUT = 30


# --- the server (runs in the subprocess) -------------------------------------


def build_app(state_dir: Path) -> Flask:
    """The Flask app: flask-websub's callbacks under ``/callbacks`` and the
    harness's ``/control`` routes. Imports Flask here: the test process that only
    drives the subscriber never loads it."""
    import requests
    from flask import Flask, Response, g, jsonify, request
    from flask_websub.errors import FlaskWebSubError
    from flask_websub.subscriber import (
        SQLite3SubscriberStorage,
        SQLite3TempSubscriberStorage,
        Subscriber,
        discover,
    )

    app = Flask(__name__)
    database = str(state_dir / "subscriber.db")
    subscriber = Subscriber(
        SQLite3SubscriberStorage(database),
        SQLite3TempSubscriberStorage(database),
        REQUEST_TIMEOUT=REQUEST_TIMEOUT,
    )
    app.register_blueprint(subscriber.build_blueprint(url_prefix=CALLBACKS))

    lock = threading.Lock()  # the server is threaded: one request per thread
    verifications: list[dict[str, Any]] = []
    pushes: list[dict[str, Any]] = []
    outcomes: list[dict[str, Any]] = []
    held: dict[str, int] = {}  # callback_id -> status its pushes are answered with

    def record_outcome(kind: str, topic_url: str, callback_id: str, detail: str) -> None:
        with lock:
            outcomes.append(
                {"kind": kind, "topic_url": topic_url, "callback_id": callback_id, "detail": detail}
            )

    # The library's events: a verified subscribe/unsubscribe, a denial, and a push
    # whose signature it checked (a listener is only called for those).
    subscriber.add_success_handler(
        lambda topic, cid, mode: record_outcome("success", topic, cid, mode)
    )
    subscriber.add_error_handler(
        lambda topic, cid, reason: record_outcome("error", topic, cid, reason)
    )

    def accepted(_topic_url: str, _callback_id: str, _body: bytes) -> None:
        g.accepted = True  # called inside the callback's request

    subscriber.add_listener(accepted)

    def callback_id() -> str | None:
        if request.blueprint != subscriber.blueprint_name or request.view_args is None:
            return None
        return str(request.view_args.get("callback_id"))

    @app.before_request
    def hold() -> Response | None:
        cid = callback_id()
        if request.method == "POST" and cid in held:
            g.held = True
            return Response("held by the test\n", status=held[cid])
        return None

    @app.after_request
    def record(response: Response) -> Response:
        cid = callback_id()
        if cid is None:
            return response
        entry: dict[str, Any] = {
            "callback_id": cid,
            "status": response.status_code,
            "headers": list(request.headers.items()),
            "at": time.time(),
        }
        if request.method == "GET":
            entry["query"] = dict(request.args)
            entry["answer"] = response.get_data(as_text=True)
            with lock:
                verifications.append(entry)
        elif request.method == "POST":
            entry["body"] = base64.b64encode(request.get_data()).decode("ascii")
            entry["accepted"] = bool(g.get("accepted"))
            entry["held"] = bool(g.get("held"))
            with lock:
                pushes.append(entry)
        return response

    @app.post("/control/subscribe")
    def subscribe() -> Response | tuple[Response, int]:
        asked = request.get_json()
        try:
            # The library finds the hub and the canonical topic from the feed.
            found = discover(asked["url"], timeout=REQUEST_TIMEOUT)
            options: dict[str, Any] = {}
            if asked.get("lease_seconds") is not None:
                options["lease_seconds"] = asked["lease_seconds"]
            if asked.get("secret") is not None:
                options["secret"] = asked["secret"]
            cid = subscriber.subscribe(**found, **options)
        except (FlaskWebSubError, requests.RequestException) as exc:
            # Discovery raises requests' errors (a feed that is not there); the
            # subscription request, the library's own, with what requests said.
            cause = exc.__cause__
            return jsonify({"error": f"{exc.__class__.__name__}: {exc} ({cause!r})"}), 502
        return jsonify(
            {
                "callback_id": cid,
                # As the library built it (url_for, external, from this request's Host).
                "callback_url": f"{request.host_url.rstrip('/')}{CALLBACKS}/{cid}",
                "hub_url": found["hub_url"],
                "topic_url": found["topic_url"],
            }
        )

    @app.post("/control/unsubscribe")
    def unsubscribe() -> Response | tuple[Response, int]:
        try:
            subscriber.unsubscribe(request.get_json()["callback_id"])
        except FlaskWebSubError as exc:
            return jsonify({"error": f"{exc.__class__.__name__}: {exc}"}), 502
        return jsonify({})

    @app.post("/control/hold")
    def set_hold() -> Response:
        asked = request.get_json()
        with lock:
            if asked.get("status") is None:
                held.pop(asked["callback_id"], None)
            else:
                held[asked["callback_id"]] = int(asked["status"])
        return jsonify({})

    @app.get("/control/state")
    def state() -> Response:
        with lock:
            return jsonify({"verifications": verifications, "pushes": pushes, "outcomes": outcomes})

    return app


def serve(state_dir: Path) -> None:
    from werkzeug.serving import make_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = make_server("127.0.0.1", 0, build_app(state_dir), threaded=True)
    print(f"websub subscriber listening on http://127.0.0.1:{server.port}", flush=True)
    server.serve_forever()


# --- the client (runs in the tests) -------------------------------------------


@dataclass(frozen=True)
class Subscription:
    """One subscription the library asked for: where the hub will call it back."""

    callback_id: str
    callback_url: str
    hub_url: str
    topic_url: str


@dataclass(frozen=True)
class Push:
    """A content distribution POST a callback got, as the harness recorded it."""

    callback_id: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    accepted: bool  # the library checked X-Hub-Signature and called its listeners
    held: bool  # answered by the harness (hold), never shown to the library

    def header(self, name: str) -> str | None:
        """One header (WSGI joins repeated ones with ", ", as ``Link`` may be)."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass(frozen=True)
class State:
    verifications: list[dict[str, Any]]
    pushes: list[Push]
    outcomes: list[dict[str, Any]]

    def verified(self, subscription: Subscription, mode: str = "subscribe") -> bool:
        """Whether the library confirmed ``mode`` for it (it answered the challenge)."""
        return any(
            o["kind"] == "success"
            and o["callback_id"] == subscription.callback_id
            and o["detail"] == mode
            for o in self.outcomes
        )

    def pushes_to(self, subscription: Subscription) -> list[Push]:
        return [p for p in self.pushes if p.callback_id == subscription.callback_id]

    def verifications_of(self, subscription: Subscription) -> list[dict[str, Any]]:
        return [v for v in self.verifications if v["callback_id"] == subscription.callback_id]


class WebSubSubscriber:
    """The subscriber process, driven over HTTP."""

    def __init__(
        self, process: asyncio.subprocess.Process, log: Path, session: aiohttp.ClientSession
    ) -> None:
        self.process = process
        self.log_path = log
        self.session = session
        self.url = ""

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.session.post(self.url + path, json=body) as response:
            text = await response.text()
            if response.status != 200:
                raise AssertionError(f"{path}: {response.status} {text}\n{self.log}")
            answer: dict[str, Any] = json.loads(text)
            return answer

    async def subscribe(
        self, feed_url: str, *, lease_seconds: int | None = None, secret: str | None = None
    ) -> Subscription:
        """Discover the hub of ``feed_url`` and subscribe to it (the hub answered
        202; verification comes later: wait for :meth:`State.verified`)."""
        answer = await self._post(
            "/control/subscribe",
            {"url": feed_url, "lease_seconds": lease_seconds, "secret": secret},
        )
        return Subscription(**answer)

    async def unsubscribe(self, subscription: Subscription) -> None:
        await self._post("/control/unsubscribe", {"callback_id": subscription.callback_id})

    async def hold(self, subscription: Subscription, status: int | None) -> None:
        """Answer its pushes with ``status`` from now on (None: let them through)."""
        await self._post(
            "/control/hold", {"callback_id": subscription.callback_id, "status": status}
        )

    async def state(self) -> State:
        async with self.session.get(self.url + "/control/state") as response:
            assert response.status == 200
            data = await response.json()
        pushes = [
            Push(
                callback_id=p["callback_id"],
                status=p["status"],
                headers=[(k, v) for k, v in p["headers"]],
                body=base64.b64decode(p["body"]),
                accepted=p["accepted"],
                held=p["held"],
            )
            for p in data["pushes"]
        ]
        return State(data["verifications"], pushes, data["outcomes"])


@asynccontextmanager
async def running_subscriber(
    folder: Path, session: aiohttp.ClientSession, *, ca_file: Path | None = None
) -> AsyncIterator[WebSubSubscriber]:
    """The subscriber process, its state and log in ``folder`` (which exists),
    once it listens. ``ca_file``: a CA its ``requests`` trusts (a hub behind a test
    TLS proxy)."""
    from tests.conftest import PATIENCE  # here: the subscriber process never needs it

    env = dict(os.environ)
    if ca_file is not None:
        env["REQUESTS_CA_BUNDLE"] = str(ca_file)
    log = folder / "subscriber.log"
    # A file, not a pipe, as for the daemon: nobody has to drain it.
    with log.open("w", encoding="utf-8") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.websub_subscriber",
            str(folder),
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )
    subscriber = WebSubSubscriber(process, log, session)
    try:
        deadline = time.monotonic() + PATIENCE
        while not (found := _LISTENING.search(subscriber.log)):
            if process.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"the subscriber did not start:\n{subscriber.log}")
            await asyncio.sleep(0.02)
        subscriber.url = found.group(1)
        yield subscriber
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
