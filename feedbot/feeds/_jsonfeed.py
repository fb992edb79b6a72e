"""JSON Feed 1.1 documents (https://www.jsonfeed.org/version/1.1/).

feedgen does not write JSON Feed; the format is small enough to write directly.
Paging uses the format's own ``next_url``. Topic slugs, which ``tags`` (names)
cannot carry, go in the ``_feedbot`` extension object.
"""

from __future__ import annotations

import json
from typing import Any

from feedbot.feeds._view import AUTHOR, EntryView, FeedView

VERSION = "https://jsonfeed.org/version/1.1"


def json_feed_document(view: FeedView) -> bytes:
    document: dict[str, Any] = {
        "version": VERSION,
        "title": view.title,
        "home_page_url": view.html_url,
        "feed_url": view.self_url,
        "description": view.description,
        "authors": [{"name": AUTHOR}],
    }
    if view.hub_url is not None:
        document["hubs"] = [{"type": "WebSub", "url": view.hub_url}]
    next_url = view.link("next")
    if next_url is not None:
        document["next_url"] = next_url
    document["items"] = [_item(entry) for entry in view.entries]
    text = json.dumps(document, ensure_ascii=False, indent=2, sort_keys=False)
    return (text + "\n").encode("utf-8")


def _item(entry: EntryView) -> dict[str, Any]:
    return {
        "id": entry.id,
        "url": entry.url,
        "title": entry.title,
        "content_html": entry.content_html,
        "date_published": entry.published.isoformat(),
        "date_modified": entry.updated.isoformat(),
        "tags": [c.label for c in entry.categories],
        "_feedbot": {
            "event_id": entry.event_id,
            "topics": [{"slug": c.term, "name": c.label} for c in entry.categories],
        },
    }
