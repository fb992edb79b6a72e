"""The ``feedbot`` command: argument parsing and exit codes, nothing else.

Exit codes: 0 success; 1 the work ran but something in it failed (a page was
rejected by ``parse``, the archive could not be read by ``poll``); 2 feedbot
could not start (bad command line, bad config, unreachable store).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from feedbot import __version__
from feedbot.archive.parse import parse_page
from feedbot.errors import ArchiveError, ConfigError, FeedbotError, ParseError, StorageError
from feedbot.settings import Settings, load_settings

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.handler(args)
    except (ConfigError, StorageError) as exc:
        print(f"feedbot: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        return 130
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="feedbot", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"feedbot {__version__}")
    parser.add_argument("--config", type=Path, help="TOML config file (default: $FEEDBOT_CONFIG)")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    parse = commands.add_parser("parse", help="parse archive pages and print their events")
    parse.add_argument("pages", nargs="+", type=Path, metavar="PAGE")
    parse.add_argument("--json", action="store_true", help="one JSON object per line")
    parse.set_defaults(handler=_cmd_parse)

    poll = commands.add_parser("poll", help="run one ingestion pass and print the counts")
    poll.set_defaults(handler=_cmd_poll)

    run = commands.add_parser("run", help="run the daemon")
    run.set_defaults(handler=_cmd_run)
    return parser


def _cmd_parse(args: argparse.Namespace) -> int:
    failed = False
    for path in args.pages:
        try:
            event = parse_page(path.read_bytes(), str(path))
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            failed = True
            continue
        except ParseError as exc:
            print(str(exc), file=sys.stderr)
            failed = True
            continue
        if args.json:
            print(json.dumps(event.to_json(), ensure_ascii=False))
        else:
            print(f"{event.id}\n  {event.date}  {event.title}")
    return EXIT_FAILED if failed else EXIT_OK


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def _cmd_poll(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return asyncio.run(_poll(settings))


async def _poll(settings: Settings) -> int:
    from feedbot.daemon import make_source
    from feedbot.ingest import Ingestor
    from feedbot.store import Store

    store = await Store.open(settings.store.url)
    source = make_source(settings)
    try:
        result = await Ingestor(store, source).poll()
    except ArchiveError as exc:
        print(f"feedbot: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await source.aclose()
        await store.close()
    print(result.summary)
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return asyncio.run(_run(settings))


async def _run(settings: Settings) -> int:
    from feedbot.daemon import Daemon, make_source
    from feedbot.store import Store

    store = await Store.open(settings.store.url)
    source = make_source(settings)
    try:
        await Daemon(settings, store, source).run_until_signalled()
    except FeedbotError as exc:
        print(f"feedbot: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    finally:
        await store.close()
    return EXIT_OK
