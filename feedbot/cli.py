"""The ``feedbot`` command: argument parsing and exit codes, nothing else.

Exit codes: 0 success; 1 the work ran but something in it failed (a page was
rejected by ``parse``, the archive could not be read by ``poll``); 2 feedbot
could not start (bad command line, bad config, unreachable store).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from feedbot import __version__
from feedbot.archive.parse import parse_page
from feedbot.clock import utc_now
from feedbot.errors import ArchiveError, ConfigError, ParseError, StorageError
from feedbot.logs import setup_logging
from feedbot.loop import run as run_async
from feedbot.model import DeliveryStatus
from feedbot.settings import Settings, load_settings

if TYPE_CHECKING:
    from feedbot.store import Store

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
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
    parser.add_argument(
        "--log-format",
        default="auto",
        choices=["auto", "json", "text"],
        help="auto: text on a terminal, JSON lines otherwise",
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

    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(required=True, metavar="ACTION")
    check = config_commands.add_parser(
        "check", help="validate the config and print it, secrets redacted"
    )
    check.set_defaults(handler=_cmd_config_check)

    feeds = commands.add_parser("feeds", help="publish the feeds")
    feeds_commands = feeds.add_subparsers(required=True, metavar="ACTION")
    export = feeds_commands.add_parser(
        "export", help="write every feed, the OPML list and the topic page for a static host"
    )
    export.add_argument("dest", type=Path, metavar="DIR")
    export.add_argument(
        "--complete",
        action="store_true",
        help="write each feed whole in one document instead of its first page",
    )
    export.set_defaults(handler=_cmd_feeds_export)

    subs = commands.add_parser("subscriptions", help="manage webhook subscriptions")
    subs_commands = subs.add_subparsers(required=True, metavar="ACTION")
    add = subs_commands.add_parser("add", help="subscribe a webhook URL")
    add.add_argument("url")
    add.add_argument(
        "--topic",
        dest="topics",
        action="append",
        metavar="SLUG",
        help="a topic slug, or '*' (repeatable; default '*')",
    )
    add.add_argument("--format", default="json", help="json | slack | discord | template:PATH")
    add.add_argument("--secret", help="whsec_... signing secret ('new' makes one)")
    add.add_argument(
        "--keyword",
        dest="keywords",
        action="append",
        default=[],
        help="only events whose title holds one of these (repeatable)",
    )
    add.set_defaults(handler=_cmd_subscriptions_add)
    subs_commands.add_parser("list", help="list subscriptions").set_defaults(
        handler=_cmd_subscriptions_list
    )
    remove = subs_commands.add_parser("remove", help="remove a subscription")
    remove.add_argument("id")
    remove.set_defaults(handler=_cmd_subscriptions_remove)
    test = subs_commands.add_parser("test", help="send a signed ping")
    test.add_argument("id")
    test.set_defaults(handler=_cmd_subscriptions_test)

    deliveries = commands.add_parser("deliveries", help="inspect and replay deliveries")
    deliveries_commands = deliveries.add_subparsers(required=True, metavar="ACTION")
    listing = deliveries_commands.add_parser("list", help="list recent deliveries")
    listing.add_argument("--status", choices=[s.value for s in DeliveryStatus])
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=_cmd_deliveries_list)
    replay = deliveries_commands.add_parser("replay", help="queue failed deliveries again")
    replay.add_argument("ids", nargs="*", metavar="ID", help="default: every failed delivery")
    replay.set_defaults(handler=_cmd_deliveries_replay)

    sink = commands.add_parser("sink", help="a local webhook receiver that prints alerts")
    sink.add_argument("--host", default="127.0.0.1")
    sink.add_argument("--port", type=int, default=9000)
    sink.add_argument("--secret", help="verify signatures with this whsec_ secret")
    sink.set_defaults(handler=_cmd_sink)
    return parser


def _cmd_parse(args: argparse.Namespace) -> int:
    import logging

    from feedbot.archive.source import name_problem, shown_name

    failed = False
    for path in args.pages:
        shown = shown_name(str(path), limit=None)
        try:
            if (problem := name_problem(path.name)) is not None:
                raise ParseError(shown, problem)
            event = parse_page(path.read_bytes(), str(path))
        except OSError as exc:
            print(f"{shown}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            failed = True
            continue
        except ParseError as exc:
            print(str(exc), file=sys.stderr)
            failed = True
            continue
        except Exception as exc:
            # A bug, yet this page's alone: say so, with the traceback, and go on.
            logging.getLogger(__name__).error("parsing %s failed", shown, exc_info=True)
            reason = f"cannot be read as a page (a bug in feedbot): {type(exc).__name__}: {exc}"
            print(f"{shown}: {reason}", file=sys.stderr)
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
    return run_async(_poll(settings))


async def _poll(settings: Settings) -> int:
    from tqdm import tqdm

    from feedbot.daemon import make_source
    from feedbot.ingest import Ingestor
    from feedbot.store import Store

    store = await Store.open(settings.store.url)
    source = make_source(settings)
    # A first ingest of a large archive takes a while: show progress on a terminal.
    bar = tqdm(unit=" pages", disable=not sys.stderr.isatty(), leave=False, mininterval=0.5)
    try:
        result = await Ingestor(store, source, backfill_days=settings.notify.backfill_days).poll(
            progress=bar.update
        )
    except ArchiveError as exc:
        print(f"feedbot: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        bar.close()
        await source.aclose()
        await store.close()
    print(result.summary)
    return EXIT_OK


def _cmd_config_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(json.dumps(settings.redacted(), indent=2))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return run_async(_run(settings))


async def _run(settings: Settings) -> int:
    from feedbot.daemon import Daemon, make_source
    from feedbot.store import Store

    store = await Store.open(settings.store.url)
    source = make_source(settings)
    try:
        await Daemon(settings, store, source).run_until_signalled()
    except OSError as exc:
        where = f"{settings.server.host}:{settings.server.port}"
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        print(f"feedbot: cannot listen on {where}: {reason}", file=sys.stderr)
        return EXIT_UNUSABLE
    finally:
        await store.close()
    return EXIT_OK


@asynccontextmanager
async def _opened_store(args: argparse.Namespace) -> AsyncIterator[tuple[Settings, Store]]:
    from feedbot.store import Store

    settings = _settings(args)
    store = await Store.open(settings.store.url)
    try:
        yield settings, store
    finally:
        await store.close()


def _cmd_subscriptions_add(args: argparse.Namespace) -> int:
    async def add() -> int:
        from feedbot.daemon import target_policy
        from feedbot.notify.outbound import build_subscription
        from feedbot.notify.signing import new_secret

        async with _opened_store(args) as (settings, store):
            secret = new_secret() if args.secret == "new" else args.secret
            subscription = build_subscription(
                url=args.url,
                topics=args.topics or ["*"],
                format=args.format,
                secret=secret,
                keywords=args.keywords,
                origin="cli",
                policy=target_policy(settings),
            )
            stored = await store.outbox.add_subscription(subscription, now=utc_now())
        print(stored.id)
        if args.secret == "new":
            print(f"secret: {secret}  (shown once; the receiver needs it to verify)")
        return EXIT_OK

    return run_async(add())


def _cmd_feeds_export(args: argparse.Namespace) -> int:
    async def export() -> int:
        from feedbot.feeds.export import export_feeds

        async with _opened_store(args) as (settings, store):
            try:
                result = await export_feeds(
                    store,
                    settings.public_base_url,
                    settings.feeds.page_size,
                    args.dest,
                    complete=args.complete,
                )
            except OSError as exc:
                print(f"feedbot: cannot write to {args.dest}: {exc}", file=sys.stderr)
                return EXIT_FAILED
        print(f"wrote {result.files} files ({result.topics} topics) to {args.dest}")
        return EXIT_OK

    return run_async(export())


def _cmd_subscriptions_list(args: argparse.Namespace) -> int:
    async def listing() -> int:
        async with _opened_store(args) as (_settings, store):
            for sub in await store.outbox.subscriptions():
                state = "active" if sub.active else f"disabled ({sub.disabled_reason})"
                signed = "signed" if sub.secret else "unsigned"
                print(
                    f"{sub.id}  {sub.url}  topics={','.join(sub.topics)}  "
                    f"format={sub.format}  {signed}  {sub.origin}  {state}"
                )
        return EXIT_OK

    return run_async(listing())


def _cmd_subscriptions_remove(args: argparse.Namespace) -> int:
    async def remove() -> int:
        async with _opened_store(args) as (_settings, store):
            if not await store.outbox.remove_subscription(args.id, now=utc_now()):
                print(f"feedbot: no subscription {args.id}", file=sys.stderr)
                return EXIT_FAILED
        print(f"removed {args.id}")
        return EXIT_OK

    return run_async(remove())


def _cmd_subscriptions_test(args: argparse.Namespace) -> int:
    async def ping() -> int:
        import aiohttp

        from feedbot.notify.outbound import ping_request
        from feedbot.notify.ssrf import make_connector

        async with _opened_store(args) as (settings, store):
            subscription = await store.outbox.subscription(args.id)
            if subscription is None:
                print(f"feedbot: no subscription {args.id}", file=sys.stderr)
                return EXIT_FAILED
            request = ping_request(
                subscription, f"msg_ping_{int(utc_now().timestamp())}", utc_now()
            )
        connector = make_connector(
            allow_private=settings.notify.allow_private_targets,
            allow_cidrs=settings.notify.allow_cidrs,
        )
        try:
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.post(
                    subscription.url,
                    data=request.body,
                    headers=request.headers,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=settings.notify.timeout),
                ) as response,
            ):
                print(f"{subscription.url}: HTTP {response.status} {response.reason or ''}")
                return EXIT_OK if 200 <= response.status < 300 else EXIT_FAILED
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            print(f"{subscription.url}: {exc or exc.__class__.__name__}", file=sys.stderr)
            return EXIT_FAILED

    return run_async(ping())


def _cmd_deliveries_list(args: argparse.Namespace) -> int:
    async def listing() -> int:
        async with _opened_store(args) as (_settings, store):
            status = DeliveryStatus(args.status) if args.status else None
            for d in await store.outbox.deliveries(status=status, limit=args.limit):
                last = f"HTTP {d.last_status}" if d.last_status else (d.last_error or "-")
                print(
                    f"{d.id}  {d.status.value:<7}  attempts={d.attempts}  "
                    f"{d.subscription_id}  {d.event_id}  last: {last}"
                )
        return EXIT_OK

    return run_async(listing())


def _cmd_deliveries_replay(args: argparse.Namespace) -> int:
    async def replay() -> int:
        async with _opened_store(args) as (_settings, store):
            count = await store.outbox.replay(args.ids or None, now=utc_now())
        print(f"{count} deliveries queued again")
        return EXIT_OK

    return run_async(replay())


def _cmd_sink(args: argparse.Namespace) -> int:
    from feedbot.notify.signing import validate_secret
    from feedbot.web.sink import run_sink

    secret = validate_secret(args.secret) if args.secret else None
    try:
        run_async(run_sink(args.host, args.port, secret))
    except OSError as exc:
        print(
            f"feedbot: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_UNUSABLE
    return EXIT_OK
