"""RFC 4287's RELAX NG grammar of Atom, for tests: taken from a package, never pasted.

RFC 4287 Appendix B gives Atom's grammar in RELAX NG's compact syntax, which
``lxml.etree.RelaxNG`` does not read. lxml's source distribution on PyPI ships
the same grammar in RELAX NG's XML syntax (``doc/s5/ep2008/atom.rng``, headed, as
Appendix B is, "RELAX NG Compact Syntax Grammar for the Atom Format
Specification Version 11"). The first call downloads that source distribution
from the package index, takes the one file out of it into the user's cache
folder (beside the Feed Validator's own venv) and checks its SHA-256; later
calls read the copy.
The schematron rules in it are annotations that RELAX NG validation skips.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import urllib.request
from functools import cache
from pathlib import Path

from lxml import etree

PROJECT, FILENAME = "lxml", "lxml-6.2.1.tar.gz"
MEMBER = "lxml-6.2.1/doc/s5/ep2008/atom.rng"
SHA256 = "70b55456be7bbb598528c9bb868845c3bcc8f7b73c26135136cf4e0f0204df0d"
PATIENCE = 120.0  # seconds for each download (the sdist is 4.5 MB)


def cached_copy() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "feedbot-tests" / f"rfc4287-{SHA256[:16]}.rng"


@cache
def atom_grammar() -> etree.RelaxNG:
    """The grammar, ready to validate documents (``assertValid`` names the error)."""
    path = cached_copy()
    if not path.is_file():
        _fetch(path)
    text = path.read_bytes()
    if hashlib.sha256(text).hexdigest() != SHA256:
        raise AssertionError(f"{path} is not the grammar of {FILENAME} ({MEMBER}); delete it")
    return etree.RelaxNG(etree.fromstring(text))


def _fetch(path: Path) -> None:
    """Download the source distribution through the package index's JSON API (PEP
    691) and take the grammar out of it. Not ``pip download``: pip prepares an
    sdist's metadata, and for lxml that compiles it (minutes on a small machine)."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    try:
        listing = _get(f"{index}/{PROJECT}/", "application/vnd.pypi.simple.v1+json")
        (found,) = [f for f in json.loads(listing)["files"] if f["filename"] == FILENAME]
        sdist = _get(found["url"])
    except (OSError, ValueError, KeyError) as exc:
        raise AssertionError(f"cannot download {FILENAME} for RFC 4287's grammar: {exc!r}") from exc
    if hashlib.sha256(sdist).hexdigest() != found["hashes"]["sha256"]:
        raise AssertionError(f"{FILENAME} from {index} does not match the index's SHA-256")
    with tarfile.open(fileobj=io.BytesIO(sdist)) as archive:
        member = archive.extractfile(MEMBER)
        if member is None:
            raise AssertionError(f"{FILENAME} holds no {MEMBER}")
        body = member.read()
    if hashlib.sha256(body).hexdigest() != SHA256:
        raise AssertionError(f"{MEMBER} of {FILENAME} is not the file expected (SHA-256 differs)")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and moved in whole: two test runs may fetch it at once.
    fd, aside = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as file:
        file.write(body)
    os.replace(aside, path)


def _get(url: str, accept: str = "*/*") -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=PATIENCE) as response:
        body: bytes = response.read()
    return body
