"""Parsing a batch of raw pages, each judged alone: what a parse worker runs.

This module is what a first ingest's worker processes import (through the
function they are handed), so it stays light: the parser, the model and the
source's page type, nothing of the store or the web app. Importing the whole
daemon into each worker cost about 40 MB a process.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import NamedTuple

from feedbot.archive.parse import ParseLimits, parse_page
from feedbot.archive.source import PageChanging, RawPage
from feedbot.errors import ParseError
from feedbot.model import EventRecord

__all__ = ["ParsedPages", "Rejection", "parse_pages"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a page was not taken."""

    reason: str
    version: str = ""  # digest of the bytes read ("" when none were)
    trace: str | None = None  # an unexpected exception's traceback: a bug in feedbot


class ParsedPages(NamedTuple):
    events: list[EventRecord]
    rejected: dict[str, Rejection]
    changing: list[str]  # paths of pages that changed while they were read


# Files read ahead of the parser. One read at a time leaves a cold disk idle between
# requests (a first start after a reboot); more readers than a few only contend with
# the parser for the GIL and spread the pages' buffers over more malloc arenas when
# the archive is in the page cache, the common case.
READERS = 2


def parse_pages(pages: Sequence[RawPage], limits: ParseLimits) -> ParsedPages:
    """Read and parse ``pages``: whatever goes wrong with one page rejects that
    page alone, with its reason (and, for a bug in feedbot, the traceback)."""
    parsed: list[EventRecord] = []
    rejected: dict[str, Rejection] = {}
    changing: list[str] = []
    with ThreadPoolExecutor(READERS) if len(pages) > READERS else nullcontext() as readers:
        contents = readers.map(_content, pages) if readers else map(_content, pages)
        for page, content in zip(pages, contents, strict=True):
            try:
                if isinstance(content, Exception):
                    raise content
                parsed.append(EventRecord.of(parse_page(content, page.path, limits=limits)))
            except ParseError as exc:
                rejected[page.path] = Rejection(exc.reason, _version(content))
            except PageChanging:
                changing.append(page.path)
            except Exception as exc:
                # A bug, yet this page's alone: it is rejected, the others go on, and
                # the traceback travels back (from a worker process) to be logged.
                rejected[page.path] = Rejection(
                    f"cannot be read as a page (a bug in feedbot): {type(exc).__name__}: {exc}",
                    _version(content),
                    traceback.format_exc(),
                )
    return ParsedPages(parsed, rejected, changing)


def _content(page: RawPage) -> bytes | Exception:
    """The page's bytes, or why it could not be read (raised where it is parsed)."""
    try:
        return page.read()
    except Exception as exc:
        return exc


def _version(content: bytes | Exception) -> str:
    if isinstance(content, Exception):
        return ""
    return hashlib.blake2b(content, digest_size=8).hexdigest()
