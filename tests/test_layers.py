"""Which part of feedbot may import which (STYLE.md: "nothing imports web, daemon or cli").

The edges (``feedbot.daemon``, ``feedbot.cli``, ``feedbot.web``) get what they build
from the settings through ``feedbot.factory``; the web app once imported the daemon
for its target policy, a cycle daemon -> web -> daemon. Checked twice: in the
source (imports inside functions included) and in a fresh interpreter that sets
up the web app with its admin API, where the import used to happen.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import feedbot

PACKAGE = Path(feedbot.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every feedbot module ``path`` imports, at the top or inside a function."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "feedbot" or name.startswith("feedbot.")}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_nothing_imports_the_daemon_or_the_cli_and_only_edges_import_web() -> None:
    edges = {"feedbot.daemon", "feedbot.cli", "feedbot.__main__"}
    wrong: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        for name in sorted(_imports(path)):
            if _under(name, "feedbot.daemon") and module not in edges:
                wrong.append(f"{module} imports {name}")
            if _under(name, "feedbot.cli") and module not in {"feedbot.__main__"}:
                wrong.append(f"{module} imports {name}")
            web_inside = _under(module, "feedbot.web")
            if _under(name, "feedbot.web") and not web_inside and module not in edges:
                wrong.append(f"{module} imports {name}")
            if _under(name, "feedbot.factory") and not (web_inside or module in edges):
                wrong.append(f"{module} imports {name} (only the edges build from settings)")
    assert wrong == []


def test_setting_up_the_web_app_imports_no_daemon() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from aiohttp import web
        import feedbot.web.app
        from feedbot.settings import Settings
        from feedbot.web.admin import setup_admin

        settings = Settings(admin={"token": "t0ken"})
        assert setup_admin(web.Application(), settings, None)  # the store is not touched
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("feedbot."))))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "feedbot.web.admin" in loaded and "feedbot.factory" in loaded
    assert "feedbot.daemon" not in loaded
    assert "feedbot.cli" not in loaded
