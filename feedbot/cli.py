"""The ``feedbot`` command: argument parsing, exit codes and the store each command
may open, nothing else.

Exit codes: 0 success; 1 the work ran but something in it failed (a page was
rejected by ``parse``, the archive could not be read by ``poll``, a delivery
asked for was not replayed); 2 feedbot could not start (bad command line, bad or
missing config, no store where one must already be, unreachable store).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from feedbot import __version__
from feedbot.archive.parse import parse_page
from feedbot.clock import utc_now
from feedbot.errors import ArchiveError, ConfigError, NotFoundError, ParseError, StorageError
from feedbot.logs import setup_logging
from feedbot.loop import run as run_async
from feedbot.model import DeliveryStatus, Subscription
from feedbot.settings import Settings, config_file, environment_variable, load_settings

if TYPE_CHECKING:
    from datetime import datetime

    from feedbot.store import Store, WebSubListing
    from feedbot.store.outbox import ReplayResult

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2

DESCRIPTION = """\
feedbot polls a news-event archive (a folder or an http(s) site of dated
Markdown pages), serves per-topic Atom, RSS and JSON feeds of its events, and
posts signed webhook alerts to subscribers."""

EPILOG = """\
configuration:
  Commands that use the store read a TOML config file: --config PATH (before or
  after the command) or the FEEDBOT_CONFIG environment variable. Any key can be
  set by an environment variable FEEDBOT_<SECTION>__<KEY> (FEEDBOT_STORE__URL,
  FEEDBOT_ARCHIVE__SOURCE, ...); `feedbot config check` prints what is in effect.

exit status: 0 done; 1 it ran, but part of the work failed; 2 it could not start.

`feedbot COMMAND --help` describes a command; README.md (Commands, Configuration)
describes every command and key."""


class StoreUse(Enum):
    """What a command may do when the SQLite file of ``store.url`` is missing."""

    CREATE = "create"  # poll, run, subscriptions add: the first use makes the store
    EXISTING = "existing"  # listing, removing, replaying: only a store that exists


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        code: int = args.handler(args)
    except NotFoundError as exc:  # removed meanwhile (by the daemon, the API, ...)
        print(f"feedbot: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ConfigError, StorageError) as exc:
        for line in str(exc).splitlines():
            print(f"feedbot: {line}", file=sys.stderr)
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        return 130
    return code


def _common_options(*, defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes, before or after its name. The copy on the
    subcommands has no defaults, so an option given before the command is not
    reset by the subcommand's parser."""
    parser = argparse.ArgumentParser(add_help=False)

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("options of every command")
    group.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        default=default(None),
        help="TOML config file (default: $FEEDBOT_CONFIG)",
    )
    group.add_argument(
        "--log-level",
        default=default("info"),
        choices=["debug", "info", "warning", "error"],
        help="least severe log messages shown (default: info)",
    )
    group.add_argument(
        "--log-format",
        default=default("auto"),
        choices=["auto", "json", "text"],
        help="auto: text on a terminal, JSON lines otherwise",
    )
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedbot",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"feedbot {__version__}")
    common = _common_options(defaults=False)
    top = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(
        group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str
    ) -> argparse.ArgumentParser:
        return group.add_parser(name, help=help_, description=help_, parents=[common])

    parse = command(top, "parse", "parse archive pages and print their events")
    parse.add_argument("pages", nargs="+", type=Path, metavar="PAGE")
    parse.add_argument("--json", action="store_true", help="one JSON object per line")
    parse.set_defaults(handler=_cmd_parse)

    poll = command(top, "poll", "run one ingestion pass and print the counts")
    poll.set_defaults(handler=_cmd_poll)

    run = command(top, "run", "run the daemon")
    run.set_defaults(handler=_cmd_run)

    config = command(top, "config", "inspect the configuration")
    config_commands = config.add_subparsers(required=True, metavar="ACTION")
    check = command(config_commands, "check", "validate the config and print it, secrets redacted")
    check.set_defaults(handler=_cmd_config_check)

    feeds = command(top, "feeds", "publish the feeds")
    feeds_commands = feeds.add_subparsers(required=True, metavar="ACTION")
    export = command(
        feeds_commands,
        "export",
        "write every feed, the OPML list and the topic page for a static host",
    )
    export.add_argument("dest", type=Path, metavar="DIR")
    export.add_argument(
        "--complete",
        action="store_true",
        help="write each feed whole in one document instead of its first page",
    )
    export.set_defaults(handler=_cmd_feeds_export)

    subs = command(top, "subscriptions", "manage webhook subscriptions")
    subs_commands = subs.add_subparsers(required=True, metavar="ACTION")
    add = command(subs_commands, "add", "subscribe a webhook URL")
    add.add_argument("url")
    add.add_argument(
        "--topic",
        dest="topics",
        action="append",
        metavar="SLUG",
        help="a topic slug, or '*' (repeatable; default '*')",
    )
    add.add_argument(
        "--format",
        default="json",
        help="json | slack | discord | apprise (URL is an Apprise URL) | template:PATH",
    )
    add.add_argument("--secret", help="whsec_... signing secret ('new' makes one)")
    add.add_argument(
        "--keyword",
        dest="keywords",
        action="append",
        default=[],
        help="only events holding one of these words (repeatable)",
    )
    add.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="KEYWORD",
        help="no events holding this word (repeatable)",
    )
    add.add_argument(
        "--events",
        default="created",
        metavar="KINDS",
        help="the alerts it wants, comma-separated: created, updated, deleted (default created)",
    )
    add.add_argument(
        "--digest",
        metavar="PERIOD",
        help="one message per period instead of one per event: hourly, daily, weekly or SECONDS",
    )
    add.add_argument("--digest-at", metavar="HH:MM", help="when a daily or weekly digest closes")
    add.add_argument("--timezone", metavar="ZONE", help="IANA zone of --digest-at (default UTC)")
    add.add_argument(
        "--inactive",
        action="store_true",
        help="add it switched off (its alerts queue until `subscriptions enable ID`)",
    )
    add.set_defaults(handler=_cmd_subscriptions_add)
    command(subs_commands, "list", "list subscriptions").set_defaults(
        handler=_cmd_subscriptions_list
    )
    remove = command(subs_commands, "remove", "remove a subscription")
    remove.add_argument("id")
    remove.set_defaults(handler=_cmd_subscriptions_remove)
    enable = command(
        subs_commands, "enable", "switch a disabled subscription on again (e.g. after a 410)"
    )
    enable.add_argument("id")
    enable.set_defaults(handler=functools.partial(_cmd_subscriptions_switch, active=True))
    disable = command(
        subs_commands, "disable", "pause a subscription: its alerts queue until it is enabled"
    )
    disable.add_argument("id")
    disable.set_defaults(handler=functools.partial(_cmd_subscriptions_switch, active=False))
    test = command(subs_commands, "test", "send a signed ping")
    test.add_argument("id")
    test.set_defaults(handler=_cmd_subscriptions_test)

    websub = command(top, "websub", "the readers subscribed through the WebSub hub")
    websub_commands = websub.add_subparsers(required=True, metavar="ACTION")
    command(
        websub_commands, "list", "list them: callback, topic, state, lease end, last delivery"
    ).set_defaults(handler=_cmd_websub_list)
    websub_remove = command(websub_commands, "remove", "end one: nothing more is pushed to it")
    websub_remove.add_argument("id")
    websub_remove.set_defaults(handler=_cmd_subscriptions_remove)

    deliveries = command(top, "deliveries", "inspect and replay deliveries")
    deliveries_commands = deliveries.add_subparsers(required=True, metavar="ACTION")
    listing = command(deliveries_commands, "list", "list recent deliveries")
    listing.add_argument("--status", choices=[s.value for s in DeliveryStatus])
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=_cmd_deliveries_list)
    replay = command(deliveries_commands, "replay", "queue failed deliveries again")
    replay.add_argument("ids", nargs="*", metavar="ID", help="default: every failed delivery")
    replay.set_defaults(handler=_cmd_deliveries_replay)

    sink = command(top, "sink", "a local webhook receiver that prints alerts")
    sink.add_argument("--host", default="127.0.0.1")
    sink.add_argument("--port", type=int, default=9000)
    sink.add_argument("--secret", help="verify signatures with this whsec_ secret")
    sink.set_defaults(handler=_cmd_sink)
    return parser


def _cmd_parse(args: argparse.Namespace) -> int:
    import logging

    from feedbot.archive.source import name_problem, shown_name

    # The daemon's limits (archive.max_page_topics, ...): a page it would reject, so does this.
    limits = _settings(args).archive.parse_limits
    failed = False
    for path in args.pages:
        shown = shown_name(str(path), limit=None)
        try:
            if (problem := name_problem(path.name)) is not None:
                raise ParseError(shown, problem)
            event = parse_page(path.read_bytes(), str(path), limits=limits)
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


def _store_settings(args: argparse.Namespace, use: StoreUse) -> Settings:
    """The settings of a command that opens the store, once it is clear which one:
    a store named by a config file or by ``FEEDBOT_STORE__URL``, never the default
    path under whatever folder feedbot was started in; and for a command that only
    works on what is there (:attr:`StoreUse.EXISTING`), a SQLite file that exists
    rather than a new empty one that would answer "nothing"."""
    settings = _settings(args)
    path, how = config_file(args.config)
    variable = environment_variable("store", "url")
    if path is None and variable is None:
        raise ConfigError(
            "no config file: give --config PATH or set FEEDBOT_CONFIG "
            f"(store.url would be {settings.store.url})"
        )
    from feedbot.store.store import sqlite_file

    database = sqlite_file(settings.store.url)
    if use is StoreUse.EXISTING and database is not None and not database.exists():
        origin = f"set by {variable}" if variable else f"of {path}, from {how}"
        meant = "store" if variable else "config"
        raise ConfigError(
            f"no store at {database} (store.url {origin}): `feedbot poll` or "
            f"`feedbot run` creates it; is this the {meant} you meant?"
        )
    return settings


def _cmd_poll(args: argparse.Namespace) -> int:
    settings = _store_settings(args, StoreUse.CREATE)
    return run_async(_poll(settings))


async def _poll(settings: Settings) -> int:
    from tqdm import tqdm

    from feedbot.factory import make_ingestor, make_source
    from feedbot.store import Store

    store = await Store.open(settings.store.url)
    source = make_source(settings)
    # A first ingest of a large archive takes a while: show progress on a terminal.
    bar = tqdm(unit=" pages", disable=not sys.stderr.isatty(), leave=False, mininterval=0.5)
    try:
        result = await make_ingestor(settings, store, source).poll(progress=bar.update)
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
    from feedbot.factory import target_policy, template_limits
    from feedbot.notify.outbound import config_subscriptions, operator_subscription

    settings = _settings(args)
    # What the daemon checks at start-up: every subscription, the operator's URL.
    policy = target_policy(settings)
    config_subscriptions(settings.subscriptions, policy, template_limits(settings))
    operator_subscription(settings, policy)
    print(json.dumps(settings.redacted(), indent=2))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    settings = _store_settings(args, StoreUse.CREATE)
    return run_async(_run(settings))


async def _run(settings: Settings) -> int:
    from feedbot.daemon import Daemon
    from feedbot.factory import make_source
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
async def _opened_store(
    args: argparse.Namespace, use: StoreUse = StoreUse.EXISTING
) -> AsyncIterator[tuple[Settings, Store]]:
    from feedbot.store import Store

    settings = _store_settings(args, use)
    store = await Store.open(settings.store.url)
    try:
        yield settings, store
    finally:
        await store.close()


def _cmd_subscriptions_add(args: argparse.Namespace) -> int:
    async def add() -> int:
        from feedbot.factory import target_policy, template_limits
        from feedbot.notify.outbound import build_subscription
        from feedbot.notify.signing import new_secret

        async with _opened_store(args, StoreUse.CREATE) as (settings, store):
            secret = new_secret() if args.secret == "new" else args.secret
            subscription = build_subscription(
                url=args.url,
                topics=args.topics or ["*"],
                format=args.format,
                secret=secret,
                keywords=args.keywords,
                exclude=args.exclude,
                events=[kind for kind in args.events.split(",") if kind.strip()],
                digest=args.digest,
                digest_at=args.digest_at,
                timezone=args.timezone,
                origin="cli",
                policy=target_policy(settings),
                templates=template_limits(settings),
            )
            if args.inactive:
                subscription = replace(
                    subscription, active=False, disabled_reason="added inactive with the CLI"
                )
            stored = await store.subscriptions.add(subscription, now=utc_now())
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
                    tombstone_days=settings.feeds.tombstone_days,
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
            for sub in await store.subscriptions.all():
                state = "active" if sub.active else f"disabled ({sub.disabled_reason})"
                signed = "signed" if sub.secret else "unsigned"
                alerts = f"events={','.join(sub.events)}"
                if sub.digest:
                    alerts = f"digest={describe_digest(sub)}"
                print(
                    f"{sub.id}  {sub.redacted().url}  topics={','.join(sub.topics)}  "
                    f"format={sub.format}  {alerts}  {signed}  {sub.origin}  {state}"
                )
        return EXIT_OK

    return run_async(listing())


def _cmd_websub_list(args: argparse.Namespace) -> int:
    async def listing() -> int:
        async with _opened_store(args) as (settings, store):
            now = utc_now()
            base = settings.public_base_url
            for entry in await store.subscriptions.websub_list():
                print(describe_websub(entry, base, now))
        return EXIT_OK

    return run_async(listing())


def describe_websub(entry: WebSubListing, base_url: str, now: datetime) -> str:
    """One line of ``feedbot websub list``."""
    subscription = entry.subscription
    lease = subscription.lease_expires
    last = "never delivered"
    if entry.last_attempt_at is not None:
        answer = entry.last_status if entry.last_status is not None else "no answer"
        last = f"last delivery {entry.last_attempt_at.isoformat(timespec='seconds')} ({answer})"
    return (
        f"{subscription.id}  {subscription.url}  "
        f"topic={base_url.rstrip('/')}{subscription.feed or ''}  {entry.state(now)}  "
        f"lease until {lease.isoformat(timespec='seconds') if lease else '-'}  {last}"
    )


def _cmd_subscriptions_remove(args: argparse.Namespace) -> int:
    async def remove() -> int:
        async with _opened_store(args) as (_settings, store):
            if not await store.subscriptions.remove(args.id, now=utc_now()):
                print(f"feedbot: no subscription {args.id}", file=sys.stderr)
                return EXIT_FAILED
        print(f"removed {args.id}")
        return EXIT_OK

    return run_async(remove())


def _cmd_subscriptions_switch(args: argparse.Namespace, *, active: bool) -> int:
    """``subscriptions enable`` (``active``) and ``subscriptions disable``."""

    async def switch() -> int:
        async with _opened_store(args) as (_settings, store):
            current = await store.subscriptions.get(args.id)
            if current is None:
                print(f"feedbot: no subscription {args.id}", file=sys.stderr)
                return EXIT_FAILED
            was = current.disabled_reason or "disabled"
            if current.active == active:
                print(f"{args.id} is already " + ("active" if active else f"disabled ({was})"))
                return EXIT_OK
            # Only the switch is written (any format, template ones too); enabling
            # clears the reason and the failure streak with it.
            reason = None if active else "disabled with the CLI"
            await store.subscriptions.set_active(args.id, active, reason=reason)
        if active:
            print(
                f"enabled {args.id} (was: {was}); "
                "`feedbot deliveries replay` queues its failed deliveries again"
            )
        else:
            print(
                f"disabled {args.id}: its alerts wait in the queue; "
                f"`feedbot subscriptions enable {args.id}` switches it on again"
            )
        return EXIT_OK

    return run_async(switch())


def describe_digest(subscription: Subscription) -> str:
    """A digest subscription's period as ``subscriptions list`` shows it."""
    shown = subscription.digest or ""
    if subscription.digest_at:
        shown += f"@{subscription.digest_at}"
    if subscription.timezone:
        shown += f" {subscription.timezone}"
    return shown


def _cmd_subscriptions_test(args: argparse.Namespace) -> int:
    async def ping() -> int:
        import aiohttp

        from feedbot.factory import target_connector, target_policy
        from feedbot.notify.apprise_target import AppriseSender
        from feedbot.notify.outbound import ping_message, ping_request

        async with _opened_store(args) as (settings, store):
            subscription = await store.subscriptions.get(args.id)
            if subscription is None:
                print(f"feedbot: no subscription {args.id}", file=sys.stderr)
                return EXIT_FAILED
            if subscription.format == "apprise":
                target, message = ping_message(subscription)
                sender = AppriseSender(
                    max_workers=1, timeout=settings.notify.timeout, policy=target_policy(settings)
                )
                try:
                    sent = await sender.send(target, message)
                finally:
                    await sender.aclose()
                shown = subscription.redacted().url
                if sent.ok:
                    print(f"{shown}: accepted")
                    return EXIT_OK
                print(f"{shown}: {sent.error}", file=sys.stderr)
                return EXIT_FAILED
            request = ping_request(
                subscription, f"msg_ping_{int(utc_now().timestamp())}", utc_now()
            )
        connector = target_connector(settings)
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
    """One line per delivery (queued, or why not) and a total; exit 1 when any
    delivery asked for (every failed one, without ids) was not queued."""

    async def replay() -> int:
        async with _opened_store(args) as (_settings, store):
            results = await store.outbox.replay(args.ids or None, now=utc_now())
        if not results:
            print("no failed deliveries to replay")
            return EXIT_OK
        for result in results:
            print(f"{result.delivery_id}  {_replay_line(result)}")
        queued = sum(result.queued for result in results)
        print(f"{queued} of {len(results)} queued again")
        return EXIT_OK if queued == len(results) else EXIT_FAILED

    return run_async(replay())


def _replay_line(result: ReplayResult) -> str:
    from feedbot.notify.formats import iso_utc
    from feedbot.store.outbox import ReplayOutcome

    subscription = result.subscription_id
    enable = (
        f"subscription {subscription} is disabled ({result.subscription_disabled}); "
        f"`feedbot subscriptions enable {subscription}` switches it on"
    )
    match result.outcome:
        case ReplayOutcome.QUEUED:
            return "queued"
        case ReplayOutcome.ALREADY_PENDING:
            due = iso_utc(result.next_attempt_at) if result.next_attempt_at else "soon"
            line = f"not queued: already pending (next attempt {due})"
            if result.subscription_disabled is not None:
                line += f", held until its {enable}"
            return line
        case ReplayOutcome.SUBSCRIPTION_DISABLED:
            return f"not queued: its {enable}, then replay again"
        case ReplayOutcome.SUBSCRIPTION_REMOVED:
            return f"not queued: its subscription {subscription} was removed"
        case ReplayOutcome.ALREADY_DELIVERED | ReplayOutcome.NO_SUCH_DELIVERY:
            return f"not queued: {result.outcome.value}"


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
