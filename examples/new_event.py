"""Write one new event page, dated today, into an archive folder (``make demo-event``).

    python examples/new_event.py [ARCHIVE]        # default: data/demo-archive

The page follows the archive format (README: "The archive format"): it continues the Lal Masjid
siege story and relates to the seed page, so the alert shows a thread. A running
``feedbot run`` picks it up within a second; the sink prints the alert.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

SEED_ID = (
    "2007/07/9/lal-masjid-siege-an-attempt-to-negotiate-a-peaceful-end-to-the-seven-day-"
    "standoff-at-islamabad-s-red-mosque-ends-without-any-progress"
)


def main() -> None:
    archive = Path(sys.argv[1] if len(sys.argv) > 1 else "data/demo-archive")
    now = datetime.now(UTC)
    day = f"{now:%Y}/{now:%m}/{now.day}"
    slug = f"demo-event-written-at-{now:%H-%M-%S}"
    title = (
        f"Lal Masjid siege: a demo event written at {now:%H:%M:%S} UTC, "
        "to show an alert arriving within a second."
    )
    folder = archive / "news" / day
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / f"{slug}.md"
    page.write_text(
        f"Formats: [HTML](/news/{day}/{slug}.html)  [JSON](/news/{day}/{slug}.json)\n\n"
        f"### [{now:%Y}-{now:%m}-{now.day}](/news/{day}/index.md)\n\n"
        "##### Lal Masjid siege\n"
        f"#  {title}\n\n"
        "### Sources:\n\n"
        "1. [feedbot demo](https://example.org/feedbot-demo)\n\n"
        "### Related:\n\n"
        "1. [ Lal Masjid siege: An attempt to negotiate a peaceful end to the seven-day "
        "standoff at Islamabad's Red Mosque ends without any progress. ]"
        f"(/news/{SEED_ID}.md) _Context: Islamabad, Red Mosque_\n",
        encoding="utf-8",
    )
    print(f"wrote {page}")


if __name__ == "__main__":
    main()
