"""The README tells the truth: its commands, its defaults, its example page.

What a new user reads first is checked against what the code does: the two
commands it opens with, the defaults table against :class:`Settings` and the
container's config, the archive format against the parser (through the example
page in ``examples/``), and the container section against ``compose.yaml``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from feedbot.archive.parse import parse_page
from feedbot.model import RelatedKind
from feedbot.settings import Settings

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match is not None, f"README has no section {title!r}"
    return match.group(1)


def _table_row(key: str) -> list[str]:
    for line in README.splitlines():
        if line.startswith(f"| `{key}` |"):
            return [cell.strip() for cell in line.strip("|").split("|")]
    raise AssertionError(f"no row for {key} in the configuration table")


def test_the_readme_opens_with_make_demo_and_make_test() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make demo", "make test"]


def test_the_sections_a_new_user_needs_are_there() -> None:
    for title in (
        "Installing",
        "Your own archive",
        "Subscribing in a reader",
        "The archive format",
        "The container",
    ):
        _section(title)
        anchor = "#" + title.lower().replace(" ", "-")
        assert f"]({anchor})" in README, f"{title} is missing from the contents"


def test_installing_says_where_the_command_lands() -> None:
    text = _section("Installing")
    assert "pip install ." in text and "pipx install ." in text
    assert "3.11" in text and "bin/feedbot" in text


def test_your_own_archive_covers_a_folder_and_http() -> None:
    text = _section("Your own archive")
    assert 'source = "/srv/archive"' in text
    assert "https://archive.example.org" in text
    assert "backfill_days" in text and "index.md" in text


def test_subscribing_covers_pasting_opml_and_newsboat() -> None:
    text = _section("Subscribing in a reader")
    assert "/feeds/topics/<slug>.atom" in text
    assert "/topics.opml" in text
    assert "newsboat -i topics.opml" in text and "~/.newsboat/urls" in text


def test_the_host_default_is_told_for_both_configs() -> None:
    container = tomllib.loads((REPO / "config" / "feedbot.toml").read_text(encoding="utf-8"))
    default = Settings().server.host
    _, value, environment, _ = _table_row("server.host")
    assert f"`{default}`" in value and f"`{container['server']['host']}`" in value
    assert environment == "`FEEDBOT_SERVER__HOST`"
    *_, meaning = _table_row("server.base_url")
    assert "Host" in meaning and "warning" in meaning


def test_the_example_page_is_what_the_format_section_describes() -> None:
    page = REPO / "examples" / "page.md"
    event = parse_page(page.read_bytes(), str(page))
    # Outside an archive folder the Formats line names the event.
    assert event.id.startswith("1989/11/9/fall-of-the-berlin-wall-")
    assert event.date.isoformat() == "1989-11-09"
    assert event.story == "Fall of the Berlin Wall"
    assert event.title is not None and event.title.startswith("Fall of the Berlin Wall: ")
    assert [s.url for s in event.sources] == [
        "https://en.wikipedia.org/wiki/Fall_of_the_Berlin_Wall"
    ]
    kinds = [r.kind for r in event.related]
    assert kinds == [RelatedKind.FOLLOW_UP, RelatedKind.BACKGROUND, RelatedKind.BACKGROUND]
    assert event.related[0].contexts == ("Germany", "Berlin")
    assert [t.slug for t in event.topics] == [
        "fall-of-the-berlin-wall",
        "germany",
        "berlin",
        "east-germany",
        "leipzig",
    ]
    # The README shows the page's own lines.
    text = _section("The archive format")
    assert "examples/page.md" in text
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith(("##### ", "#  ", "### [", "1. [Wikipedia]")):
            assert line.strip() in text, line


def test_code_points_at_the_readme_not_at_a_spec_outside_the_repository() -> None:
    outside = re.compile(r"SPEC(?:\.md| section)|\.\./shared|/work/shared")
    found = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in ("feedbot", "bench", "examples", "templates", "config")
        for path in sorted((REPO / folder).rglob("*"))
        if path.is_file() and path.suffix in {".py", ".toml", ".html", ".j2", ".js", ".md"}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if outside.search(line)
    ]
    assert not found


def test_the_container_section_matches_compose_and_the_dockerfile() -> None:
    text = _section("The container")
    compose = (REPO / "compose.yaml").read_text(encoding="utf-8")
    for profile in re.findall(r"docker compose --profile (\w+) up", text):
        assert f"[{profile}]" in compose or f", {profile}]" in compose, profile
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "ARG BASE_IMAGE=" in dockerfile
    assert "--build-arg BASE_IMAGE=" in text and "FEEDBOT_BASE_IMAGE=" in text
    assert "HEALTHCHECK" in text and "/healthz" in text and "/data" in text
