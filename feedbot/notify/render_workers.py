"""Operator templates rendered in worker processes, within a time and a memory limit.

An operator's ``template:`` payload is code of their choosing, run for every
alert. Rendered in the daemon, a loop that runs long on real data blocks the
event loop (no health check answers, no other subscription is served) and
``{{ 'x' * 10**9 }}`` takes gigabytes before any size check sees its output.
So every compile and render of one happens here, in worker processes started
with the ``spawn`` method (a fresh interpreter; they end with their parent, see
feedbot/processes.py):

- :class:`TemplateRenderer` keeps up to ``TemplateLimits.workers`` of them for
  deliveries. A render that runs past ``seconds`` is ended by killing its worker
  (a fresh one is started for the next render); a subscription has one render
  going at a time, so a heavy template holds at most one worker while the other
  subscriptions' templates use the rest. Built-in formats never come here.
- Each worker caps its own address space (``RLIMIT_AS``, Linux and other POSIX
  systems) at its size after start-up plus ``memory_mib``: an allocation beyond
  it fails at once with ``MemoryError``, which the worker reports before it
  exits (a fresh one replaces it). The sandbox refuses the plain cases (a string
  or list over the output cap) before allocating (feedbot/notify/payload_templates.py).
- :func:`check_template` is the test render a subscription must pass when it is
  made (config file at start-up, CLI, API): compile and render the samples in a
  worker of its own, under the same limits.

Every failure is a :class:`~feedbot.errors.TemplateError` naming the file, the
line where known and the limit it ran over; the deliverer records it as a
failed attempt, retried on the schedule, and disables a subscription whose
template fails ``notify.template_failures`` times in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feedbot.errors import ConfigError, FeedbotError, TemplateError, TemplateLimit
from feedbot.loop import start_worker
from feedbot.notify.formats import MAX_TEMPLATE_OUTPUT, RenderedPayload
from feedbot.notify.payload_templates import (
    CompiledTemplate,
    check_samples,
    compile_template,
    samples,
)

if TYPE_CHECKING:
    from feedbot.settings import NotifySettings

_LENGTH = struct.Struct("!I")
_START_TIMEOUT = 60.0  # seconds for a worker to import and report ready; not a render's


@dataclass(frozen=True, slots=True)
class TemplateLimits:
    """What one render of an operator's template may use (README: "Webhooks")."""

    seconds: float = 2.0  # per render; the test render gets it per sample
    memory_mib: int = 256  # a worker's address space beyond its size at start-up
    max_bytes: int = MAX_TEMPLATE_OUTPUT  # the output, and any string or list made on the way
    workers: int = 2  # render worker processes per delivering process

    @classmethod
    def of(cls, notify: NotifySettings) -> TemplateLimits:
        return cls(seconds=notify.template_timeout, memory_mib=notify.template_memory)


@dataclass(frozen=True, slots=True)
class _Render:
    path: str
    context: dict[str, Any]
    max_bytes: int


@dataclass(frozen=True, slots=True)
class _Check:
    path: str
    max_bytes: int


# A worker's answer: the body, None (a check passed) or the error; and whether
# the worker is stopping (it ran out of memory and starts no other render).
_Reply = tuple[RenderedPayload | FeedbotError | None, bool]


class TemplateRenderer:
    """Renders operator templates for deliveries, in worker processes under ``limits``.

    Workers start on the first render, not before: a daemon without template
    subscriptions never starts one. :meth:`aclose` ends them.
    """

    def __init__(self, limits: TemplateLimits | None = None) -> None:
        self.limits = limits or TemplateLimits()
        self._idle: list[_Worker] = []
        self._slots = asyncio.Semaphore(self.limits.workers)
        self._turns: dict[str, asyncio.Lock] = {}  # per subscription: one render at a time
        self._started = 0
        self._rendering = 0

    @property
    def rendering(self) -> int:
        """Renders a worker is busy with now."""
        return self._rendering

    async def render(self, path: Path, context: dict[str, Any], *, key: str) -> RenderedPayload:
        """The body of ``path`` for ``context``; ``key`` (the subscription) has one
        render going at a time. Raises ``TemplateError``."""
        job = _Render(str(path), context, self.limits.max_bytes)
        turn = self._turns.setdefault(key, asyncio.Lock())
        async with turn, self._slots:
            worker = self._idle.pop() if self._idle else await self._start(job.path)
            reply = await self._ask(worker, job)
        if isinstance(reply, FeedbotError):
            raise reply
        assert isinstance(reply, RenderedPayload)
        return reply

    async def aclose(self) -> None:
        """End the idle workers (a render still going ends its own when cancelled)."""
        idle, self._idle = self._idle, []
        for worker in idle:
            worker.writer.close()  # the worker reads the end of the stream and exits
        for worker in idle:
            await asyncio.to_thread(worker.process.join, 5)
            if worker.process.is_alive():
                await _end(worker)

    async def _start(self, path: str) -> _Worker:
        self._started += 1
        ours, theirs = socket.socketpair()
        process = _spawn(theirs, self.limits, f"feedbot-render-{self._started}")
        worker: _Worker | None = None
        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours)
            worker = _Worker(process, reader, writer)
            await asyncio.wait_for(_read_frame(reader), _START_TIMEOUT)  # ready
        except BaseException as exc:  # cancelled too: no process is left behind
            if worker is not None:
                await asyncio.shield(_end(worker))
            else:
                ours.close()
                process.kill()
            if isinstance(exc, TimeoutError | OSError | EOFError | asyncio.IncompleteReadError):
                raise TemplateError(
                    path, f"no render worker could start ({type(exc).__name__})"
                ) from None
            raise
        return worker

    async def _ask(self, worker: _Worker, job: _Render) -> RenderedPayload | FeedbotError | None:
        seconds = self.limits.seconds
        self._rendering += 1
        try:
            _write_frame(worker.writer, job)
            reply: _Reply = await asyncio.wait_for(_read_frame(worker.reader), seconds)
        except TimeoutError:
            await _end(worker)
            return TemplateError(
                job.path, f"rendering took over {seconds:g} s", limit=TemplateLimit.TIME
            )
        except (OSError, EOFError, asyncio.IncompleteReadError, pickle.UnpicklingError):
            await asyncio.to_thread(worker.process.join, 5)  # it closed its end: it is ending
            ended = _exit_of(worker.process)
            await _end(worker)
            return TemplateError(job.path, f"the render worker ended ({ended})")
        except BaseException:
            # Cancelled mid-render: its answer would reach the next render's question.
            await asyncio.shield(_end(worker))
            raise
        finally:
            self._rendering -= 1
        payload, stopping = reply
        if stopping:
            await _end(worker)
        else:
            self._idle.append(worker)
        return payload


@dataclass(eq=False)
class _Worker:
    process: Any  # a spawn-context multiprocessing.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


def _spawn(theirs: socket.socket, limits: TemplateLimits, name: str) -> Any:
    process = multiprocessing.get_context("spawn").Process(
        target=_worker_main, args=(theirs, limits.memory_mib), name=name, daemon=True
    )
    try:
        process.start()
    finally:
        theirs.close()
    return process


async def _end(worker: _Worker) -> None:
    worker.writer.close()
    if worker.process.is_alive():
        worker.process.kill()
    await asyncio.to_thread(worker.process.join, 5)


def _exit_of(process: Any) -> str:
    code = process.exitcode
    if code is None:
        return "still running"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def _write_frame(writer: asyncio.StreamWriter, item: Any) -> None:
    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_LENGTH.pack(len(data)) + data)


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    return pickle.loads(await reader.readexactly(length))


# -- the test render ---------------------------------------------------------------------


def check_template(path: str | os.PathLike[str], limits: TemplateLimits | None = None) -> None:
    """Compile ``path`` and render the samples, in a worker of its own under
    ``limits`` (each sample gets ``limits.seconds``). Blocks; a failure is a
    ``ConfigError`` naming the field ``format``, the file and the line."""
    limits = limits or TemplateLimits()
    ours, theirs = socket.socketpair()
    process = _spawn(theirs, limits, "feedbot-render-check")
    try:
        ours.settimeout(_START_TIMEOUT)
        _receive(ours)  # ready
        _send(ours, _Check(str(path), limits.max_bytes))
        seconds = limits.seconds * (len(samples()) + 1)  # the compile gets its share too
        ours.settimeout(seconds)
        try:
            payload, _stopping = _receive(ours)
        except TimeoutError:
            raise ConfigError.about(
                "format", f"template {path}: compiling and the test render took over {seconds:g} s"
            ) from None
        except (OSError, EOFError):
            process.join(5)  # it closed its end: it is ending
            raise ConfigError.about(
                "format",
                f"template {path}: the render worker ended ({_exit_of(process)}) "
                "in the test render",
            ) from None
    except (OSError, EOFError) as exc:
        reason = f"template {path}: no render worker could start: {exc}"
        raise ConfigError.about("format", reason) from None
    finally:
        ours.close()
        if process.is_alive():
            process.kill()
        process.join(5)
    if isinstance(payload, FeedbotError):
        raise payload


def _send(sock: socket.socket, item: Any) -> None:
    data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _receive(sock: socket.socket) -> Any:
    """The next item; EOFError when the other end has closed."""
    (length,) = _LENGTH.unpack(_exactly(sock, _LENGTH.size))
    return pickle.loads(_exactly(sock, length))


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


# -- the worker process -------------------------------------------------------------------


def _worker_main(connection: socket.socket, memory_mib: int) -> None:
    start_worker()
    _limit_memory(memory_mib)
    templates: dict[str, CompiledTemplate] = {}
    _send(connection, None)  # ready
    while True:
        try:
            job = _receive(connection)
        except (OSError, EOFError):
            return  # the parent closed its end, or is gone
        reply = _serve(job, templates)
        try:
            _send(connection, reply)
        except OSError:
            return
        if reply[1]:
            return  # out of memory: a fresh process takes over


def _serve(job: _Render | _Check, templates: dict[str, CompiledTemplate]) -> _Reply:
    try:
        if isinstance(job, _Check):
            checked = compile_template(job.path, max_bytes=job.max_bytes)
            check_samples(checked)
            return None, False
        template = templates.get(job.path)
        if template is None:
            try:
                template = compile_template(job.path, max_bytes=job.max_bytes)
            except ConfigError as exc:  # changed or removed since it was checked
                raise TemplateError(job.path, exc.reason) from None
            templates[job.path] = template
        return RenderedPayload(template.render(job.context), template.content_type), False
    except MemoryError:
        templates.clear()
        error = TemplateError(job.path, "out of memory", limit=TemplateLimit.MEMORY)
        return (ConfigError.about("format", str(error)) if isinstance(job, _Check) else error), True
    except FeedbotError as exc:
        # Out of memory (the render turned the MemoryError into its error): what
        # this process took on the way may not all come back, so a fresh one takes
        # over. A size the sandbox refused was never allocated.
        return exc, isinstance(exc.__cause__, MemoryError)


def _limit_memory(memory_mib: int) -> None:
    """Cap this process's address space at its present size plus ``memory_mib``."""
    try:
        import resource
    except ImportError:  # Windows: no such limit; the time limit still holds
        return
    size = _address_space()
    if size is None:
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + memory_mib * 2**20
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _address_space() -> int | None:
    """This process's virtual memory size in bytes (Linux's /proc), or None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")
