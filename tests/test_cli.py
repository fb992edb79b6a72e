"""The ``feedbot`` command: output, exit codes and one-line errors."""

from __future__ import annotations

import json
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
            "unknown key 'archive.sorce' (environment: FEEDBOT_ARCHIVE__SORCE)",
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
    assert capsys.readouterr().out.strip() == "0 deliveries queued again"
