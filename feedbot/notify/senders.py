"""Sender processes: the HTTP side of delivery spread over more than one core.

With ``notify.senders = N`` the Deliverer stays the only writer of the outbox (it
claims, keeps the in-flight and per-host limits, and records every attempt), and
a :class:`SenderPool` moves each attempt's work (rendering, signing, the request
and its answer) to N worker processes, each with its own event loop and
ClientSession. Jobs go out and reports come back over a socket pair, as pickled
frames batched per turn of the event loop.

Nothing can be lost in between. A sender that dies fails its outstanding
attempts with :class:`SenderLost`, which the Deliverer answers by making them
itself (same webhook-id: a receiver may see one twice, never lose one), and a
new sender takes its place; senders that keep dying at once are not replaced
forever, and the daemon then makes every request itself. When the daemon dies,
every sender sees its socket close, finishes the attempts it holds and exits;
their outcomes are never recorded, so their claims lapse and the alerts are
sent again: at least once, as always.
"""

from __future__ import annotations

import asyncio
import io
import logging
import multiprocessing
import pickle
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any

import aiohttp

from feedbot.clock import utc_now
from feedbot.logs import LogFormat, setup_logging
from feedbot.loop import run
from feedbot.model import Event, Related, Source, Subscription, Topic
from feedbot.notify.deliver import Attempter, DelivererSettings, SenderLost
from feedbot.notify.retry import RetryPolicy
from feedbot.notify.ssrf import make_connector
from feedbot.store import AttemptReport, Delivery, DeliveryJob

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("!I")
# Senders that die within _SHORT_LIFE seconds of starting, more than _QUICK_DEATHS
# times in a row, are broken, not unlucky: they are not replaced.
_SHORT_LIFE = 10.0
_QUICK_DEATHS = 3


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """Everything a sender process needs to make attempts as the daemon would."""

    base_url: str
    settings: DelivererSettings
    policy: RetryPolicy
    allow_private: bool = False
    allow_cidrs: tuple[str, ...] = ()
    log_level: str = "info"
    log_format: LogFormat = "auto"


class SenderPool:
    """Makes attempts in ``processes`` sender processes (a Deliverer's ``sender``)."""

    def __init__(self, processes: int, config: SenderConfig) -> None:
        if processes < 1:
            raise ValueError("a sender pool needs at least one process")
        self.processes = processes
        self.config = config
        self._senders: list[_Sender] = []
        self._closing = False
        self._spawned = 0
        self._quick_deaths = 0

    async def start(self) -> None:
        for _ in range(self.processes):
            await self._spawn()

    async def __call__(self, job: DeliveryJob) -> AttemptReport:
        if not self._senders:
            raise SenderLost("no sender process is running")
        sender = min(self._senders, key=lambda s: len(s.waiting))
        future: asyncio.Future[AttemptReport] = asyncio.get_running_loop().create_future()
        sender.waiting[job.delivery.id] = future
        sender.send(job)
        return await future

    async def close(self, grace: float) -> None:
        """Let the senders finish what they hold (up to ``grace`` seconds), then end them."""
        self._closing = True
        senders = list(self._senders)
        for sender in senders:
            sender.end_input()
        if senders:
            await asyncio.wait([s.reading for s in senders], timeout=grace)
        for sender in senders:
            if sender.process.is_alive():
                sender.process.terminate()
            await asyncio.to_thread(sender.process.join, 5)
            sender.reading.cancel()
            sender.fail_all("the daemon stopped before the sender answered")
            sender.writer.close()

    async def _spawn(self) -> None:
        self._spawned += 1
        ours, theirs = socket.socketpair()
        process = multiprocessing.get_context("spawn").Process(
            target=_sender_main,
            args=(theirs, self.config),
            name=f"feedbot-sender-{self._spawned}",
            daemon=True,
        )
        process.start()
        theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        sender = _Sender(process, reader, writer)
        sender.reading = asyncio.create_task(self._read(sender), name=process.name)
        self._senders.append(sender)

    async def _read(self, sender: _Sender) -> None:
        try:
            while (reports := await _read_frame(sender.reader)) is not None:
                for delivery_id, report in reports:
                    future = sender.waiting.pop(delivery_id, None)
                    if future is not None and not future.done():
                        future.set_result(report)
        except (OSError, asyncio.IncompleteReadError, pickle.UnpicklingError) as exc:
            log.error("lost the connection to %s: %s", sender.process.name, exc)
        if sender in self._senders:
            self._senders.remove(sender)
        sender.fail_all(f"sender process {sender.process.name} exited")
        sender.writer.close()
        if self._closing:
            return
        await asyncio.to_thread(sender.process.join, 5)
        lived = time.monotonic() - sender.started
        self._quick_deaths = self._quick_deaths + 1 if lived < _SHORT_LIFE else 0
        if self._quick_deaths > _QUICK_DEATHS:
            log.error(
                "sender process %s exited (code %s), the %dth to die within %g s of "
                "starting: not starting another (%d left; without any, the daemon "
                "makes the requests itself)",
                sender.process.name,
                sender.process.exitcode,
                self._quick_deaths,
                _SHORT_LIFE,
                len(self._senders),
            )
            return
        log.error(
            "sender process %s exited (code %s); starting another",
            sender.process.name,
            sender.process.exitcode,
        )
        await asyncio.sleep(min(lived, 1.0))  # one that dies at once is not restarted in a loop
        if not self._closing:
            await self._spawn()


@dataclass(eq=False)
class _Sender:
    process: Any  # multiprocessing.Process (typed loosely: the spawn context's class)
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    waiting: dict[str, asyncio.Future[AttemptReport]] = field(default_factory=dict)
    reading: asyncio.Task[None] = field(init=False)
    started: float = field(default_factory=time.monotonic)
    _outgoing: list[DeliveryJob] = field(default_factory=list)

    def send(self, job: DeliveryJob) -> None:
        # Jobs claimed together leave together: one frame per turn of the loop.
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outgoing.append(job)

    def _flush(self) -> None:
        jobs, self._outgoing = self._outgoing, []
        if jobs and not self.writer.is_closing():
            _write_frame(self.writer, jobs)

    def end_input(self) -> None:
        self._flush()
        if self.writer.can_write_eof() and not self.writer.is_closing():
            self.writer.write_eof()

    def fail_all(self, reason: str) -> None:
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(SenderLost(reason))


# -- frames ----------------------------------------------------------------------------


_Reducer = Callable[[Any], tuple[Callable[..., Any], tuple[Any, ...]]]


def _by_fields(cls: type) -> _Reducer:
    values = attrgetter(*(f.name for f in fields(cls)))
    return lambda obj: (cls, values(obj))


# The model's frozen dataclasses pickle by their fields and unpickle through their
# constructors: the standard way reads each class's fields anew for every object,
# which costs more than the rest of a frame.
_REDUCERS: dict[type, _Reducer] = {
    cls: _by_fields(cls)
    for cls in (DeliveryJob, Delivery, Subscription, Event, Source, Related, Topic, AttemptReport)
}


def _write_frame(writer: asyncio.StreamWriter, items: list[Any]) -> None:
    buffer = io.BytesIO()
    buffer.write(_LENGTH.pack(0))
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _REDUCERS
    pickler.dump(items)
    frame = buffer.getbuffer()
    _LENGTH.pack_into(frame, 0, len(frame) - _LENGTH.size)
    writer.write(frame)


async def _read_frame(reader: asyncio.StreamReader) -> list[Any] | None:
    """The next frame, or None when the other side has closed."""
    try:
        header = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    (length,) = _LENGTH.unpack(header)
    items: list[Any] = pickle.loads(await reader.readexactly(length))
    return items


# -- the sender process ------------------------------------------------------------------


def _sender_main(connection: socket.socket, config: SenderConfig) -> None:
    setup_logging(config.log_level, config.log_format)
    run(_serve(connection, config))


async def _serve(connection: socket.socket, config: SenderConfig) -> None:
    """Attempt every job that arrives, answer with its report, until the input ends."""
    # Imported here: only the sender process needs the request factory (and its
    # templates); the daemon side of the pool stays light.
    from feedbot.notify.outbound import RequestFactory

    reader, writer = await asyncio.open_unix_connection(sock=connection)
    connector = make_connector(
        allow_private=config.allow_private,
        allow_cidrs=list(config.allow_cidrs),
        limit=config.settings.max_in_flight,
    )
    session = aiohttp.ClientSession(connector=connector)
    attempter = Attempter(
        session, RequestFactory(config.base_url), settings=config.settings, policy=config.policy
    )
    answers: list[tuple[str, AttemptReport]] = []
    loop = asyncio.get_running_loop()

    def answer() -> None:
        ready, answers[:] = list(answers), []
        if ready and not writer.is_closing():
            _write_frame(writer, ready)

    async def attempt(job: DeliveryJob) -> None:
        try:
            report = await attempter(job)
        except Exception as exc:  # a bug must not cost the alert: report it, retry later
            log.exception("attempt of %s failed", job.delivery.id)
            report = attempter.judged(job, utc_now(), 0, None, f"sender error: {exc}", None)
        if not answers:
            loop.call_soon(answer)
        answers.append((job.delivery.id, report))

    running: set[asyncio.Task[None]] = set()
    try:
        while (jobs := await _read_frame(reader)) is not None:
            for job in jobs:
                task = asyncio.create_task(attempt(job))
                running.add(task)
                task.add_done_callback(running.discard)
        if running:
            await asyncio.wait(running)
        answer()
        if not writer.is_closing():
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass  # the daemon is gone: what was sent and not recorded will be sent again
    finally:
        await session.close()
        writer.close()
