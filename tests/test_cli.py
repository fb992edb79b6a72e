"""The ``feedbot`` command: output, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from feedbot.cli import main
from tests.conftest import SHARED_SEED, seed_bytes, write_page

SECRET = "whsec_ZGVtby1zZWNyZXQtZm9yLWZlZWRib3QtbWFrZS1kZW1v"


@pytest.fixture
def config(tmp_path: Path, archive: Path) -> Path:
    path = tmp_path / "feedbot.toml"
    path.write_text(
        f'[archive]\nsource = "{archive}"\n[store]\nurl = "sqlite:///{tmp_path / "cli.db"}"\n',
        encoding="utf-8",
    )
    return path


def test_parse_json_prints_the_spec_object(tmp_path: Path, capsys) -> None:
    page = tmp_path / "seed.txt"
    page.write_bytes(seed_bytes())
    assert main(["parse", "--json", str(page)]) == 0
    event = json.loads(capsys.readouterr().out.splitlines()[0])
    assert event["date"] == "2007-07-09" and event["story"] == "Lal Masjid siege"
    assert [t["slug"] for t in event["topics"]] == ["lal-masjid-siege", "islamabad", "red-mosque"]
    assert [r["kind"] for r in event["related"]] == [
        "follow_up",
        "background",
        "follow_up",
        "follow_up",
        "follow_up",
    ]


def test_parse_reports_bad_pages_and_prints_the_rest(tmp_path: Path, capsys) -> None:
    good = tmp_path / "good.md"
    good.write_bytes(seed_bytes())
    bad = tmp_path / "bad.md"
    bad.write_text("# A summary but no date\n")
    missing = tmp_path / "missing.md"
    assert main(["parse", "--json", str(bad), str(good), str(missing)]) == 1
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1
    lines = err.splitlines()
    assert lines[0].startswith(f"{bad}: no date line")
    assert lines[1].startswith(f"{missing}: cannot read")


@pytest.mark.skipif(not SHARED_SEED.exists(), reason="the shared seed is not beside the checkout")
def test_parse_the_shared_seed_verbatim(capsys) -> None:
    assert main(["parse", "--json", str(SHARED_SEED)]) == 0
    assert json.loads(capsys.readouterr().out)["id"].startswith("2007/07/9/lal-masjid-siege")


def test_poll_prints_counts(config: Path, archive: Path, capsys) -> None:
    write_page(archive, "2007/07/10", "storm", "Storm")
    (archive / "news/2007/07/10/junk.md").write_bytes(b"\x00junk")
    assert main(["--config", str(config), "poll"]) == 0
    assert capsys.readouterr().out.strip() == "2 new, 0 updated, 0 unchanged, 1 rejected"
    assert main(["--config", str(config), "poll"]) == 0
    assert capsys.readouterr().out.strip() == "0 new, 0 updated, 0 unchanged, 0 rejected"


def test_poll_of_a_missing_archive_is_one_line_and_exit_1(
    config: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("FEEDBOT_ARCHIVE__SOURCE", "/nonexistent/archive")
    assert main(["--config", str(config), "poll"]) == 1
    assert (
        capsys.readouterr().err.strip() == "feedbot: archive folder /nonexistent/archive not found"
    )


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            "[archive]\nsorce = 'x'\n",
            "bad.toml: unknown key 'archive.sorce' (expected one of source, poll_interval,",
        ),
        ("[archive]\npoll_interval = 'often'\n", "bad value for 'archive.poll_interval': 'often'"),
        ("[store]\nurl = 'mysql://x'\n", "bad value for 'store.url'"),
        ("[server]\nport = 99999\n", "bad value for 'server.port': 99999"),
        ("[archive\n", "not valid TOML"),
    ],
)
def test_bad_config_stops_with_one_line_naming_the_key(
    tmp_path: Path, capsys, toml: str, expected: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    assert main(["--config", str(path), "poll"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


def test_missing_config_file(tmp_path: Path, capsys) -> None:
    assert main(["--config", str(tmp_path / "nope.toml"), "poll"]) == 2
    assert "nope.toml: config file not found" in capsys.readouterr().err


def test_subscriptions_add_list_remove(config: Path, capsys) -> None:
    assert (
        main(
            [
                "--config",
                str(config),
                "subscriptions",
                "add",
                "https://hooks.example.org/x",
                "--topic",
                "islamabad",
                "--topic",
                "red-mosque",
                "--secret",
                SECRET,
            ]
        )
        == 0
    )
    sub_id = capsys.readouterr().out.strip()
    assert sub_id.startswith("sub_")
    assert main(["--config", str(config), "subscriptions", "list"]) == 0
    listing = capsys.readouterr().out
    assert sub_id in listing and "topics=islamabad,red-mosque" in listing and "signed" in listing
    assert SECRET not in listing
    assert main(["--config", str(config), "subscriptions", "remove", sub_id]) == 0
    assert main(["--config", str(config), "subscriptions", "remove", sub_id]) == 1


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["not a url"], "url:"),
        (["http://exa mple.org/"], "url: 'http://exa mple.org/' holds U+0020 (space)"),
        (["http://exa\x00mple.org/"], "holds U+0000"),
        (["https://h.example/\u202ehook"], "holds U+202E (right-to-left override)"),
        (["http://ex%20ample.org/"], "is not a host name"),
        (["http://-x.example/"], "is not a host name"),
        (["http://user:pw@h.example/"], "url: user:password@"),
        (["http://h.example:0/"], "url: port 0 is out of range"),
        (["ftp://example.org/"], "url:"),
        (["http://127.0.0.1:9000/"], "url: refused"),
        (["https://h.example/", "--format", "xml"], "format: unknown payload format 'xml'"),
        (["https://h.example/", "--secret", "hunter2"], "secret: must start with 'whsec_'"),
        (["https://h.example/", "--topic", "../etc"], "topics:"),
    ],
)
def test_subscriptions_add_refuses_bad_fields(
    config: Path, capsys, extra: list[str], expected: str
) -> None:
    assert main(["--config", str(config), "subscriptions", "add", *extra]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert "hunter2" not in err


def test_subscriptions_add_refuses_a_broken_template(config: Path, tmp_path: Path, capsys) -> None:
    template = tmp_path / "broken.json.j2"
    template.write_text('{"title": {{ event.title | tojson }\n')
    args = ["subscriptions", "add", "https://h.example/", "--format", f"template:{template}"]
    assert main(["--config", str(config), *args]) == 2
    err = capsys.readouterr().err
    assert "format: template" in err and "broken.json.j2" in err


def test_deliveries_list_and_replay(config: Path, capsys) -> None:
    assert main(["--config", str(config), "subscriptions", "add", "https://h.example/"]) == 0
    assert main(["--config", str(config), "poll"]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "deliveries", "list"]) == 0
    assert capsys.readouterr().out == ""  # backfill_days = 0: the first poll alerts nobody
    assert main(["--config", str(config), "deliveries", "replay"]) == 0
    assert capsys.readouterr().out.strip() == "no failed deliveries to replay"


# -- options anywhere, and which config -------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--config", "{config}", "subscriptions", "list"],
        ["subscriptions", "--config", "{config}", "list"],
        ["subscriptions", "list", "--config", "{config}"],
        ["subscriptions", "list", "--config", "{config}", "--log-level", "error"],
        ["--log-format", "text", "subscriptions", "list", "--config", "{config}"],
        # Given twice, the one nearest the end wins.
        ["--config", "{missing}", "subscriptions", "list", "--config", "{config}"],
    ],
)
def test_common_options_go_before_or_after_the_command(
    config: Path, tmp_path: Path, capsys, args: list[str]
) -> None:
    assert main(["--config", str(config), "subscriptions", "add", "https://h.example/"]) == 0
    sub_id = capsys.readouterr().out.strip()
    filled = [a.format(config=config, missing=tmp_path / "missing.toml") for a in args]
    assert main(filled) == 0, capsys.readouterr().err
    assert sub_id in capsys.readouterr().out


def test_log_options_after_the_command_are_parsed_there(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["poll", "--log-level", "loud"])
    assert exited.value.code == 2
    assert "--log-level: invalid choice: 'loud'" in capsys.readouterr().err


STORE_COMMANDS = [
    ["poll"],
    ["subscriptions", "add", "https://h.example/"],
    ["subscriptions", "list"],
    ["subscriptions", "remove", "sub_0"],
    ["subscriptions", "enable", "sub_0"],
    ["subscriptions", "disable", "sub_0"],
    ["subscriptions", "test", "sub_0"],
    ["deliveries", "list"],
    ["deliveries", "replay"],
    ["feeds", "export", "out"],
]
READING_COMMANDS = [c for c in STORE_COMMANDS if c[0] not in ("poll", "run") and c[1] != "add"]


@pytest.fixture
def empty_folder(tmp_path: Path, monkeypatch) -> Path:
    """The working folder, empty, with no config or store named anywhere."""
    folder = tmp_path / "empty"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for name in ("FEEDBOT_CONFIG", "FEEDBOT_STORE__URL"):
        monkeypatch.delenv(name, raising=False)
    return folder


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=" ".join)
def test_without_a_config_no_store_is_invented(
    empty_folder: Path, capsys, command: list[str]
) -> None:
    assert main(command) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "feedbot: no config file: give --config PATH or set FEEDBOT_CONFIG "
        f"(store.url would be sqlite:///{empty_folder / 'data' / 'feedbot.db'})"
    ]
    assert list(empty_folder.iterdir()) == []


@pytest.mark.e2e
def test_run_without_a_config_does_not_start(empty_folder: Path) -> None:
    # A real process: were it to start, it would serve until killed.
    finished = subprocess.run(
        [sys.executable, "-m", "feedbot", "run"],
        cwd=empty_folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2, finished.stderr
    assert finished.stderr.startswith("feedbot: no config file: give --config PATH")
    assert list(empty_folder.iterdir()) == []


@pytest.mark.parametrize("command", READING_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("chosen_by", ["--config", "FEEDBOT_CONFIG"])
def test_commands_that_read_the_store_never_create_it(
    config: Path, tmp_path: Path, monkeypatch, capsys, command: list[str], chosen_by: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if chosen_by == "--config":
        argv = [*command, "--config", str(config)]
    else:
        monkeypatch.setenv("FEEDBOT_CONFIG", str(config))
        argv = command
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    database = tmp_path / "cli.db"
    assert len(err) == 1
    assert err[0].startswith(
        f"feedbot: no store at {database} (store.url of {config}, from {chosen_by}):"
    )
    assert "is this the config you meant?" in err[0]
    assert not database.exists()


def test_a_store_named_in_the_environment_is_enough(
    empty_folder: Path, archive: Path, monkeypatch, capsys
) -> None:
    database = empty_folder / "env.db"
    monkeypatch.setenv("FEEDBOT_STORE__URL", f"sqlite:///{database}")
    assert main(["subscriptions", "list"]) == 2
    assert capsys.readouterr().err.startswith(
        f"feedbot: no store at {database} (store.url set by FEEDBOT_STORE__URL):"
    )
    monkeypatch.setenv("FEEDBOT_ARCHIVE__SOURCE", str(archive))
    assert main(["poll"]) == 0
    assert database.exists()
    assert main(["subscriptions", "list"]) == 0


def test_config_check_needs_no_store(empty_folder: Path, capsys) -> None:
    assert main(["config", "check"]) == 0
    assert json.loads(capsys.readouterr().out)["server"]["port"] == 8080
    assert list(empty_folder.iterdir()) == []


def test_every_bad_key_is_a_line_naming_its_origin(config: Path, monkeypatch, capsys) -> None:
    config.write_text(config.read_text() + "[server]\nhots = 'x'\n")
    monkeypatch.setenv("FEEDBOT_SERVER__PROT", "8080")
    assert main(["config", "check", "--config", str(config)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    expected = "(expected one of host, port, base_url, "
    assert lines[0].endswith("(and 1 more, below)")
    by_key = {"hots" if "'server.hots'" in line else "prot": line for line in lines}
    assert by_key["hots"].startswith(f"feedbot: {config}: unknown key 'server.hots' {expected}")
    assert by_key["prot"].startswith(
        f"feedbot: environment variable FEEDBOT_SERVER__PROT: unknown key 'server.prot' {expected}"
    )


def test_help_is_written_for_users(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    description = out.split("\n\n")[1]
    assert description.startswith("feedbot polls a news-event archive")
    assert "argument parsing" not in out and "``" not in out
    assert "FEEDBOT_CONFIG" in out and "README" in out and "exit status" in out


def test_a_config_subscription_with_a_space_in_its_host_is_refused() -> None:
    from feedbot.errors import ConfigError
    from feedbot.notify.outbound import config_subscriptions
    from feedbot.notify.ssrf import TargetPolicy
    from feedbot.settings import SubscriptionSettings

    entries = [
        SubscriptionSettings(url="https://ok.example/"),
        SubscriptionSettings(url="http://exa mple.org/"),
    ]
    with pytest.raises(ConfigError, match=r"^subscriptions\[1\]\.url: .* holds U\+0020"):
        config_subscriptions(entries, TargetPolicy.build())


# -- replay, one answer per delivery ---------------------------------------------------


def test_replay_answers_for_each_delivery(config: Path, tmp_path: Path, capsys) -> None:
    import asyncio

    from feedbot.store import Store
    from tests.test_replay import Scene, build_scene

    async def scene() -> Scene:
        store = await Store.open(f"sqlite:///{tmp_path / 'cli.db'}")
        try:
            return await build_scene(store)
        finally:
            await store.close()

    built = asyncio.run(scene())
    off = built.disabled_subscription.id
    cfg = ["--config", str(config)]
    asked = [built.failed, built.pending, built.done, built.disabled, built.removed, "msg_nope"]
    assert main(["deliveries", "replay", *asked, *cfg]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{built.failed}  queued"
    assert lines[1].startswith(f"{built.pending}  not queued: already pending (next attempt ")
    assert lines[2] == f"{built.done}  not queued: already delivered"
    assert lines[3] == (
        f"{built.disabled}  not queued: its subscription {off} is disabled (HTTP 410 Gone); "
        f"`feedbot subscriptions enable {off}` switches it on, then replay again"
    )
    assert lines[4].startswith(f"{built.removed}  not queued: its subscription sub_")
    assert lines[4].endswith(" was removed")
    assert lines[5] == "msg_nope  not queued: no such delivery"
    assert lines[6] == "1 of 6 queued again"

    assert main(["subscriptions", "enable", off, *cfg]) == 0
    assert capsys.readouterr().out.startswith(f"enabled {off} (was: HTTP 410 Gone)")
    assert main(["deliveries", "replay", built.disabled, *cfg]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{built.disabled}  queued",
        "1 of 1 queued again",
    ]
    # Every failed one: none left that can be sent (the removed subscription's cannot).
    assert main(["deliveries", "replay", *cfg]) == 0
    assert capsys.readouterr().out.strip() == "no failed deliveries to replay"
    assert main(["subscriptions", "enable", off, *cfg]) == 0
    assert capsys.readouterr().out.strip() == f"{off} is already active"


# -- switching a subscription on and off, any format ------------------------------------


def test_enable_and_disable_a_template_subscription_after_a_410(
    tmp_path: Path, archive: Path, store_url: str, capsys
) -> None:
    import asyncio
    from datetime import UTC, datetime, timedelta

    from feedbot.model import DeliveryStatus, EventRecord
    from feedbot.store import AttemptReport, Store
    from tests.test_outbox import event

    config = tmp_path / "feedbot.toml"
    config.write_text(
        f'[archive]\nsource = "{archive}"\n[store]\nurl = "{store_url}"\n', encoding="utf-8"
    )
    cfg = ["--config", str(config)]
    template = tmp_path / "alert.json.j2"
    template.write_text('{"title": {{ event.title | tojson }}}\n', encoding="utf-8")
    add = ["subscriptions", "add", "https://h.example/", "--format", f"template:{template}"]
    assert main([*add, *cfg]) == 0
    sub_id = capsys.readouterr().out.strip()

    async def gone() -> None:  # the receiver answers 410: the deliverer disables it
        now = datetime.now(UTC)
        store = await Store.open(store_url)
        try:
            await store.write_batch(
                new=[EventRecord.of(event("2026/11/27/a"))],
                changed=[],
                marks_={},
                rejected={},
                accepted_paths=[],
                now=now,
                alert_since=None,
            )
            (job,) = await store.outbox.claim_due(
                now=now, limit=1, worker="w", lease=timedelta(seconds=60)
            )
            report = AttemptReport(
                now, 5, 410, "HTTP 410", DeliveryStatus.FAILED, disable_subscription="HTTP 410 Gone"
            )
            await store.outbox.finish_attempt(job.delivery, report)
        finally:
            await store.close()

    asyncio.run(gone())

    def listed() -> str:
        assert main(["subscriptions", "list", *cfg]) == 0
        (line,) = capsys.readouterr().out.splitlines()
        assert line.startswith(sub_id) and f"format=template:{template}" in line
        return line

    assert listed().endswith("disabled (HTTP 410 Gone)")
    assert main(["subscriptions", "disable", sub_id, *cfg]) == 0
    assert capsys.readouterr().out.strip() == f"{sub_id} is already disabled (HTTP 410 Gone)"
    assert main(["subscriptions", "enable", sub_id, *cfg]) == 0
    assert capsys.readouterr().out.startswith(f"enabled {sub_id} (was: HTTP 410 Gone)")
    assert listed().endswith(" active")
    assert main(["subscriptions", "disable", sub_id, *cfg]) == 0
    assert capsys.readouterr().out.strip() == (
        f"disabled {sub_id}: its alerts wait in the queue; "
        f"`feedbot subscriptions enable {sub_id}` switches it on again"
    )
    assert listed().endswith("disabled (disabled with the CLI)")
    assert main(["subscriptions", "enable", sub_id, *cfg]) == 0
    capsys.readouterr()
    assert listed().endswith(" active")
    assert main(["subscriptions", "disable", "sub_nope", *cfg]) == 1
    assert capsys.readouterr().err.strip() == "feedbot: no subscription sub_nope"
