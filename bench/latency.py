"""Latency benchmark: a page written into the archive -> its alert, and its WebSub push.

    python bench/latency.py [--pages 50] [--json]

Runs ``feedbot run`` (a real process) on a watched copy of the sample archive with
one signed JSON webhook subscription, and one reader subscribed through the
WebSub hub to the feed of every event, both to the receiver of bench/notify.py
(``bench/_receiver.py``, its own process, recording arrival times). Then writes
``--pages`` new pages one at a time, each renamed into place the way an archive
sync does, and waits for both deliveries of each before the next. Reports, from
the rename to the arrival at the receiver (both clocks are this machine's):
p50, p90, p99 and max of each. Targets (issue 17): p50 <= 200 ms, p99 <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from _stats import percentile

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SECRET = "whsec_" + "bGF0ZW5jeS1iZW5jaC1zZWNyZXQtZm9yLWZlZWRib3Q="
_LISTENING = re.compile(r"web server listening on (http://[^\s\"]+)")
PATIENCE = 60.0


def write_page(archive: Path, n: int, scratch: Path) -> float:
    """Page ``latency-N``, dated today (UTC), renamed into its day folder; the
    time of the rename."""
    now = datetime.now(UTC)
    day = f"{now:%Y/%m}/{now.day}"
    slug = f"latency-{n}"
    text = (
        f"### [{now:%Y-%m}-{now.day}](/news/{day}/index.md)\n\n"
        "##### Latency bench\n"
        f"#  Latency bench: page {slug} is written and alerted.\n\n"
        "### Sources:\n\n"
        f"1. [Bench](https://example.org/{slug})\n"
    )
    folder = archive / "news" / day
    folder.mkdir(parents=True, exist_ok=True)
    staged = scratch / f"{slug}.md"
    staged.write_text(text, encoding="utf-8")
    written = time.time()
    os.replace(staged, folder / f"{slug}.md")
    return written


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"latency bench: {what} did not happen within {PATIENCE:g} s")
        await asyncio.sleep(0.005)


def metric_set(
    session: aiohttp.ClientSession, base: str, name: str
) -> Callable[[], Awaitable[bool]]:
    """A check: does the daemon's ``/metrics`` show ``name`` above zero?"""

    async def check() -> bool:
        async with session.get(base + "/metrics") as response:
            text = await response.text()
        found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
        return found is not None and float(found.group(1)) > 0

    return check


def start(root: Path) -> tuple[subprocess.Popen[str], int, subprocess.Popen[bytes], Path]:
    """The receiver (and its port), and ``feedbot run`` on a copy of the sample
    archive (and the archive), each its own process."""
    receiver = subprocess.Popen(
        [sys.executable, str(HERE / "_receiver.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    port = int(receiver.stdout.readline())
    archive = root / "archive"
    shutil.copytree(REPO / "examples" / "archive", archive)
    config = root / "feedbot.toml"
    config.write_text(
        f'[archive]\nsource = "{archive}"\npoll_interval = 3600\n'
        f'[store]\nurl = "sqlite:///{root / "feedbot.db"}"\n'
        '[server]\nhost = "127.0.0.1"\nport = 0\n'
        "[notify]\nallow_private_targets = true\n"
        f'[[subscriptions]]\nurl = "http://127.0.0.1:{port}/r/latency/alert"\n'
        f'secret = "{SECRET}"\n',
        encoding="utf-8",
    )
    with (root / "feedbot.log").open("w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "feedbot", "--config", str(config), "run"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    return receiver, port, daemon, archive


def stop(receiver: subprocess.Popen[str], daemon: subprocess.Popen[bytes]) -> None:
    daemon.terminate()
    daemon.wait(30)
    assert receiver.stdin is not None
    receiver.stdin.close()
    receiver.wait(30)


async def measure(
    args: argparse.Namespace, root: Path, port: int, archive: Path
) -> dict[str, float]:
    hooks = f"http://127.0.0.1:{port}/r/latency"
    scratch = root / "scratch"
    scratch.mkdir()
    async with aiohttp.ClientSession() as session:
        base = ""

        async def listening() -> bool:
            nonlocal base
            found = _LISTENING.search((root / "feedbot.log").read_text())
            base = found.group(1) if found else ""
            return bool(base)

        await until(listening, "the daemon listening")
        await until(metric_set(session, base, 'feedbot_polls_total{status="ok"}'), "a first poll")
        await until(metric_set(session, base, "feedbot_archive_watch"), "the folder watch")
        form = {
            "hub.mode": "subscribe",
            "hub.topic": f"{base}/feeds/all.atom",
            "hub.callback": f"{hooks}/push",
        }
        async with session.post(base + "/websub", data=form) as response:
            response.raise_for_status()
        await until(
            metric_set(session, base, 'feedbot_websub_subscriptions{state="active"}'),
            "the WebSub subscription",
        )
        seen: set[str] = set()  # webhook-ids of the alerts counted already
        alerts: list[float] = []
        pushes: list[float] = []
        for n in range(args.pages):
            written = write_page(archive, n, scratch)
            arrived: dict[str, float] = {}

            async def both(n: int = n, arrived: dict[str, float] = arrived) -> bool:
                """Both deliveries of page ``n`` have arrived (each alert's
                webhook-id is new; the push names the page)."""
                async with session.get(f"http://127.0.0.1:{port}/stats/latency?keep=1") as r:
                    stats = await r.json()
                for key, moment in zip(stats["keys"], stats["times"], strict=True):
                    if key == f"push/latency-{n}":
                        arrived["push"] = moment
                    elif key.startswith("msg_") and key not in seen:
                        arrived["alert"] = moment
                        seen.add(key)
                return len(arrived) == 2

            await until(both, f"page latency-{n} alerted and pushed")
            alerts.append(arrived["alert"] - written)
            pushes.append(arrived["push"] - written)
    result: dict[str, float] = {"pages": float(args.pages)}
    for name, values in (("alert", alerts), ("push", pushes)):
        ordered = sorted(values)
        for label, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            result[f"{name}_{label}_ms"] = percentile(ordered, fraction) * 1000
        result[f"{name}_max_ms"] = ordered[-1] * 1000
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="feedbot-latency-") as tmp:
        receiver, port, daemon, archive = start(Path(tmp))
        try:
            result = asyncio.run(measure(args, Path(tmp), port, archive))
        finally:
            stop(receiver, daemon)
    print(f"{'page written ->':<22}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}   target")
    for name, label in (("alert", "webhook alert"), ("push", "WebSub push")):
        cells = "".join(f"{result[f'{name}_{p}_ms']:>7.0f}ms" for p in ("p50", "p90", "p99", "max"))
        print(f"{label:<22}{cells}   p50 <= 200 ms, p99 <= 1 s")
    print(f"({args.pages} pages, one at a time)")
    print(json.dumps({k: round(v, 1) for k, v in result.items()}))


if __name__ == "__main__":
    main()
