"""Idle CPU of a daemon whose webhook receivers all hang.

    python bench/idle.py [--subscriptions 3] [--per-host 2] [--events 20] [--seconds 10] [--workers 0]

Starts a real ``feedbot run`` (SQLite, a local archive of ``--events`` pages dated
today, ``backfill_days = 1`` so that each of them is alerted) with
``--subscriptions`` subscriptions on one receiver (one host:port, one path each)
that reads every request and never answers. Once every subscription has a
request in flight (or ``--per-host`` requests are, whichever is fewer) and the first
poll is over, it measures the CPU
time of the daemon (and of its delivery workers, with ``--workers N``) over
``--seconds`` seconds of wall-clock time, and prints it as a share of one core.

A deliverer that has nothing it may send should sleep: what it uses then is the
cost of polling the outbox every ``idle_poll`` (1 s). ``--per-host`` below
``--subscriptions`` is the case of many subscriptions on one host (every Slack
webhook is on hooks.slack.com). The daemon's attempts do not time out during
the run (``notify.timeout = 300``).

Run it from a checkout: the daemon is that checkout's ``python -m feedbot``.
Prints a line of text and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
from aiohttp import web

HERE = Path(__file__).resolve().parent
LISTENING = re.compile(r"web server listening on (http://\S+)")


def write_archive(root: Path, count: int) -> None:
    today = datetime.now(UTC).date()
    folder = root / "news" / f"{today:%Y/%m}/{today.day}"
    folder.mkdir(parents=True)
    for i in range(count):
        slug = f"idle-bench-event-{i:03d}"
        (folder / f"{slug}.md").write_text(
            f"### [{today:%Y-%m-%d}](/news/{today:%Y/%m}/{today.day}/index.md)\n\n"
            f"#  Idle bench event {i}\n\n"
            f"### Sources:\n\n1. [Example](https://example.org/{slug})\n",
            encoding="utf-8",
        )


def write_config(folder: Path, hook: str, args: argparse.Namespace) -> Path:
    subscriptions = "".join(
        f'[[subscriptions]]\nurl = "{hook}/hang/{n}"\ntopics = ["*"]\n\n'
        for n in range(args.subscriptions)
    )
    path = folder / "feedbot.toml"
    path.write_text(
        f"""
[archive]
source = "{folder / "archive"}"
poll_interval = 3600
[store]
url = "sqlite:///{folder / "idle.db"}"
[server]
host = "127.0.0.1"
port = 0
shutdown_timeout = 1
[notify]
allow_private_targets = true
backfill_days = 1
timeout = 300
per_host = {args.per_host}
workers = {args.workers}

{subscriptions}""",
        encoding="utf-8",
    )
    return path


async def measure(args: argparse.Namespace) -> dict[str, object]:
    arrived: list[str] = []
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await request.read()
        arrived.append(request.path)
        await never.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hang/{n}", hang)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook = f"http://127.0.0.1:{runner.addresses[0][1]}"
    with tempfile.TemporaryDirectory(prefix="feedbot-idle-") as tmp:
        folder = Path(tmp)
        write_archive(folder / "archive", args.events)
        config = write_config(folder, hook, args)
        daemon = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "feedbot",
            "--config",
            str(config),
            "--log-format",
            "json",
            "run",
            cwd=HERE.parent,  # this checkout's feedbot
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        log: list[str] = []

        async def read_log() -> None:
            assert daemon.stdout is not None
            while line := await daemon.stdout.readline():
                log.append(line.decode("utf-8", "replace").rstrip())

        reading = asyncio.create_task(read_log())
        try:
            async with asyncio.timeout(120):
                # (The old deliverer could give all of a host's slots to one of them.)
                while len(arrived) < min(args.subscriptions, args.per_host):
                    if daemon.returncode is not None:
                        raise SystemExit("feedbot exited:\n" + "\n".join(log))
                    await asyncio.sleep(0.1)
            await asyncio.sleep(args.settle)  # the first poll's last writes
            process = psutil.Process(daemon.pid)

            def cpu() -> float:
                every = [process, *process.children(recursive=True)]
                total = 0.0
                for p in every:
                    try:
                        times = p.cpu_times()
                    except psutil.NoSuchProcess:
                        continue
                    total += times.user + times.system
                return total

            in_flight_before = len(arrived)
            cpu_before, wall_before = cpu(), time.monotonic()
            await asyncio.sleep(args.seconds)
            cpu_after, wall_after = cpu(), time.monotonic()
        finally:
            daemon.terminate()
            await daemon.wait()
            await reading
            never.set()
            await runner.cleanup()
    cpu_s = cpu_after - cpu_before
    wall_s = wall_after - wall_before
    return {
        "subscriptions": args.subscriptions,
        "per_host": args.per_host,
        "workers": args.workers,
        "events": args.events,
        "seconds": round(wall_s, 2),
        "cpu_s": round(cpu_s, 3),
        "cpu_pct_of_a_core": round(100 * cpu_s / wall_s, 2),
        "requests_in_flight": in_flight_before,
        "requests_during": len(arrived) - in_flight_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=3)
    parser.add_argument("--per-host", type=int, default=2, help="notify.per_host")
    parser.add_argument("--events", type=int, default=20, help="pages, each alerted")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured wall-clock time")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--workers", type=int, default=0, help="notify.workers")
    args = parser.parse_args()
    result = asyncio.run(measure(args))
    print(
        f"{result['subscriptions']} hanging subscriptions on one host (per_host "
        f"{result['per_host']}, workers {result['workers']}): the daemon used "
        f"{result['cpu_pct_of_a_core']}% of a core over {result['seconds']} s, "
        f"{result['requests_in_flight']} requests in flight"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
