"""Loading the settings: where each bad key came from, every bad key listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedbot.errors import ConfigError
from feedbot.settings import Settings, config_file, environment_variable, load_settings


@pytest.fixture(autouse=True)
def _no_feedbot_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FEEDBOT_CONFIG", "FEEDBOT_STORE__URL", "FEEDBOT_SERVER__PORT"):
        monkeypatch.delenv(name, raising=False)


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "port.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path | None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return str(caught.value).splitlines()


def test_an_environment_typo_is_blamed_on_the_variable_not_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config(tmp_path, "[server]\nport = 8081\n")
    monkeypatch.setenv("FEEDBOT_SERVER__PROT", "8080")
    (line,) = problems(path)
    assert line.startswith("environment variable FEEDBOT_SERVER__PROT: unknown key 'server.prot'")
    assert "port.toml" not in line
    assert "expected one of host, port, base_url" in line


def test_a_file_typo_is_blamed_on_the_file(tmp_path: Path) -> None:
    path = config(tmp_path, "[server]\nprot = 8080\n")
    (line,) = problems(path)
    assert line.startswith(f"{path}: unknown key 'server.prot'")
    assert "environment" not in line


def test_a_bad_value_from_the_environment_names_the_variable_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config(tmp_path, "[server]\nport = 8081\n")
    monkeypatch.setenv("feedbot_server__port", "eighty")  # names are case-insensitive
    (line,) = problems(path)
    assert line.startswith(
        "environment variable feedbot_server__port: bad value for 'server.port': 'eighty'"
    )


def test_every_bad_key_is_listed_one_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config(
        tmp_path,
        "[server]\nprot = 1\nshutdown_timeout = 'soon'\n[archive]\nsorce = 'x'\n",
    )
    monkeypatch.setenv("FEEDBOT_FEEDS__PAGE_SIZE", "0")
    lines = problems(path)
    assert len(lines) == 4, lines
    # The first line stands alone (start-up errors show one line) and says more follow.
    assert lines[0].endswith("(and 3 more, below)")
    text = "\n".join(lines)
    assert f"{path}: unknown key 'server.prot'" in text
    assert f"{path}: bad value for 'server.shutdown_timeout': 'soon'" in text
    assert f"{path}: unknown key 'archive.sorce'" in text
    assert "environment variable FEEDBOT_FEEDS__PAGE_SIZE: bad value for 'feeds.page_size'" in text


def test_subscriptions_keys_are_named_by_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config(tmp_path, "[[subscriptions]]\nurl = 'https://h.example/'\nbogus = 1\n")
    (line,) = problems(path)
    assert line.startswith(f"{path}: unknown key 'subscriptions[0].bogus' (expected one of url,")
    # A JSON value from the environment replaces the file's list, and is blamed for it.
    monkeypatch.setenv("FEEDBOT_SUBSCRIPTIONS", '[{"url": 3}]')
    (line,) = problems(path)
    assert line.startswith(
        "environment variable FEEDBOT_SUBSCRIPTIONS: bad value for 'subscriptions[0].url'"
    )


def test_a_bad_secret_is_not_shown(tmp_path: Path) -> None:
    path = config(tmp_path, "[admin]\ntoken = ['hunter2']\n")
    (line,) = problems(path)
    assert "admin.token" in line and "hunter2" not in line


def test_without_a_file_an_environment_error_still_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEEDBOT_ARCHIVE__POLL_INTERVAL", "often")
    (line,) = problems(None)
    assert line.startswith(
        "environment variable FEEDBOT_ARCHIVE__POLL_INTERVAL: bad value for "
        "'archive.poll_interval': 'often'"
    )


def test_which_config_and_which_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_file(None) == (None, "")
    assert config_file(tmp_path / "a.toml") == (tmp_path / "a.toml", "--config")
    monkeypatch.setenv("FEEDBOT_CONFIG", str(tmp_path / "b.toml"))
    assert config_file(None) == (tmp_path / "b.toml", "FEEDBOT_CONFIG")
    assert config_file(tmp_path / "a.toml") == (tmp_path / "a.toml", "--config")
    assert environment_variable("store", "url") is None
    monkeypatch.setenv("FEEDBOT_STORE__URL", "sqlite:///x.db")
    assert environment_variable("store", "url") == "FEEDBOT_STORE__URL"
    assert environment_variable("store", "lease_seconds") is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", "http://127.0.0.1:8080"), ("::", "http://[::]:8080")],
)
def test_the_fallback_base_url_brackets_an_ipv6_host(host: str, expected: str) -> None:
    settings = Settings(server={"host": host, "port": 8080})
    assert settings.public_base_url == expected
