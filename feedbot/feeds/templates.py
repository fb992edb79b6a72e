"""Finding feedbot's Jinja2 templates, from a source checkout or an installed wheel.

A checkout keeps them in the top-level ``templates/`` folder (beside
``pyproject.toml``); a wheel ships them as package data ``feedbot/templates``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2

_CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


def templates_loader() -> jinja2.BaseLoader:
    folder = _CHECKOUT_ROOT / "templates"
    # pyproject.toml proves this is our checkout, not a site-packages that happens
    # to hold some other distribution's top-level "templates" folder.
    if (_CHECKOUT_ROOT / "pyproject.toml").is_file() and folder.is_dir():
        return jinja2.FileSystemLoader(folder)
    # PackageLoader reads through importlib.resources, zipped wheels included.
    return jinja2.PackageLoader("feedbot", "templates")


@cache
def jinja_environment() -> jinja2.Environment:
    """The shared environment for feedbot's own templates: autoescaped, strict.

    Templates an operator supplies (webhook payloads) are not rendered here: they
    need a sandboxed environment of their own.
    """
    return jinja2.Environment(
        loader=templates_loader(),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
