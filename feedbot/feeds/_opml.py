"""OPML 2.0 subscription lists (http://opml.org/spec2.opml), for import into readers.

Written with :mod:`xml.etree.ElementTree`, which escapes markup; it does not
refuse characters XML forbids, so every string is made XML-safe first. The
``text``, ``title`` and ``description`` of OPML 2.0 may hold HTML, so topic
names go in HTML-escaped (a name "<b>" is shown as written, not in bold). No
``dateCreated``: the same topics always give the same bytes.
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from feedbot.feeds._text import xml_safe
from feedbot.feeds.spec import FeedSpec
from feedbot.model import Topic


def opml_document(topics: Sequence[tuple[Topic, int]], base_url: str, title: str) -> bytes:
    opml = ET.Element("opml", version="2.0")
    head = ET.SubElement(opml, "head")
    ET.SubElement(head, "title").text = html.escape(xml_safe(title), quote=False)
    body = ET.SubElement(opml, "body")
    listed = [(FeedSpec.for_topic(topic, base_url), count) for topic, count in topics]
    if not listed:
        # OPML 2.0: a body holds one or more outlines. With no topics yet, the
        # one feed there is to subscribe to is every event's.
        listed = [(FeedSpec.all_events(base_url), 0)]
    for spec, count in listed:
        name = html.escape(xml_safe(spec.title) or spec.feed_id, quote=False)
        ET.SubElement(
            body,
            "outline",
            {
                "type": "rss",  # OPML 2.0's type for any feed subscription, Atom included
                "text": name,
                "title": name,
                "description": f"{count} event{'' if count == 1 else 's'}",
                "xmlUrl": spec.url(),
                "htmlUrl": spec.html_url,
            },
        )
    ET.indent(opml)
    document: bytes = ET.tostring(opml, encoding="utf-8", xml_declaration=True)
    return document + b"\n"
