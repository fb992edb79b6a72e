"""The screenshots in docs/: each page of feedbot, as headless chromium shows it.

``make screenshots`` (or ``.venv/bin/python docs/screenshots.py [NAME ...]``)
starts ``feedbot run`` on a copy of the sample archive, exactly as the browser
tests do (tests/browser.py), and writes ``docs/<NAME>.png`` for each shot below,
or for those named: the desktop window (1280x800) of every page, and the home
and a topic page at phone width (375x740) as ``*-phone.png``. The window, not
the whole page: the images stay small and the same size from run to run. The
daemon listens on port 8080 (``--port``), as ``make demo`` does, so the URLs the
pages show are the demo's, and the same in every run.

A shot is written only when its page answers 200 and shows what marks it as that
page (``needs``), so a page that does not exist yet, or a feed the browser shows
as text rather than through its stylesheet, leaves the old image alone; the
script then names what it skipped and why, and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parent
# The daemon and browser helpers live with the tests; run as a script, the
# repository is not on the import path.
sys.path.insert(0, str(DOCS.parent))

from tests.browser import (  # noqa: E402
    DESKTOP,
    EVENT,
    PHONE,
    TOPIC,
    WORD,
    Viewport,
    chromium,
    sample_daemon,
    screenshot,
    unavailable,
)


@dataclass(frozen=True)
class Shot:
    name: str
    path: str
    viewport: Viewport = DESKTOP
    needs: str = "h1"  # a CSS selector only the intended page matches


# The home page is told from the topic list it replaced by its search box.
SHOTS = [
    Shot("home", "/", needs="input[name=q]"),
    Shot("topics", "/topics"),
    Shot("topic", f"/topics/{TOPIC}"),
    Shot("search", f"/search?q={WORD}"),
    Shot("event", f"/events/{EVENT}"),
    Shot("feed", f"/feeds/topics/{TOPIC}.atom", needs="#subscribe"),
    Shot("home-phone", "/", PHONE, needs="input[name=q]"),
    Shot("topic-phone", f"/topics/{TOPIC}", PHONE),
]


async def take(shots: list[Shot], port: int) -> list[str]:
    """Write the shots; why each one not written was not."""
    skipped = []
    with tempfile.TemporaryDirectory(prefix="feedbot-screenshots-") as folder:
        async with sample_daemon(Path(folder), port) as daemon, chromium() as browser:
            for shot in shots:
                target = DOCS / f"{shot.name}.png"
                why = await screenshot(
                    browser, daemon.url + shot.path, shot.viewport, target, needs=shot.needs
                )
                if why is None:
                    print(
                        f"wrote {target.relative_to(DOCS.parent)}  ({shot.path}, {shot.viewport})"
                    )
                else:
                    skipped.append(f"{shot.name} ({shot.path}): {why}")
    return skipped


def main() -> int:
    names = [shot.name for shot in SHOTS]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"of {', '.join(names)}")
    parser.add_argument("--port", type=int, default=8080, help="for the daemon (default 8080)")
    options = parser.parse_args()
    chosen = options.names or names
    if unknown := sorted(set(chosen) - set(names)):
        parser.error(f"no shot named {', '.join(unknown)}")
    if (reason := unavailable(axe=False)) is not None:
        print(f"screenshots: {reason}", file=sys.stderr)
        return 1
    skipped = asyncio.run(take([shot for shot in SHOTS if shot.name in chosen], options.port))
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
