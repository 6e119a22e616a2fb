"""Sessions: `nox` runs lint, typing, tests (on every Python the classifiers claim: 3.11, 3.12
and 3.13; one missing is skipped on your machine and an error in CI), peers (the recipes for
tekore and spotipy), httpx2 (the suite on httpx2, without httpx), lowest (the lowest allowed
versions), docs (into docs/_build/html) and
package (the sdist and wheel, checked as a package index would); `nox -s bench` the
benchmarks; `nox -s demo` serves the demo on http://127.0.0.1:5000."""

from __future__ import annotations

import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typing", "tests", "peers", "httpx2", "lowest", "docs", "package"]
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.11", "3.12", "3.13"]
EXTRAS = "[redis,flask,postgresql]"

PYPROJECT = nox.project.load_toml("pyproject.toml")


def _install(session: nox.Session, *groups: str, extras: str = "") -> None:
    requirements = [
        req for group in groups for req in nox.project.dependency_groups(PYPROJECT, group)
    ]
    if requirements:
        session.install(*requirements)
    session.install("-e", f".{extras}")


@nox.session
def lint(session: nox.Session) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    _install(session, "typing", "bench", extras=EXTRAS)
    session.run("mypy", "quart_spotify_auth", "tests", "benchmarks", "examples")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The suite, on the newest release of every dependency: what a plain install gets.
    Coverage is measured on the first Python, in the test processes and in every Python process
    they start (the command line, served apps): that doubles its time, so only there."""
    _install(session, "test", extras=EXTRAS)
    _same_as_a_plain_install(session)
    measure = ["--cov=quart_spotify_auth", "--cov-report=term-missing:skip-covered"]
    session.run(
        "pytest", "-n", "2", *(measure if session.python == PYTHONS[0] else ()), *session.posargs
    )


@nox.session
def peers(session: nox.Session) -> None:
    """docs/recipes.md against the fake, with tekore and spotipy (tekore holds httpx below
    0.29, so it is kept out of the suite's environment)."""
    _install(session, "peers", extras=EXTRAS)
    session.run("pytest", "-p", "no:cacheprovider", "tests/test_recipes.py", *session.posargs)


@nox.session(python="3.11")
def httpx2(session: nox.Session) -> None:
    """The suite on httpx2 (httpx's fork) with httpx not installed: SPOTIFY_HTTP_LIBRARY=httpx2
    makes the tests (tests/_httplib.py) and every app under test choose it."""
    _install(session, "test", extras=EXTRAS)
    session.run("python", "-m", "pip", "uninstall", "--yes", "httpx", "httpcore")
    session.install("httpx2")
    session.run("python", "-c", _NO_HTTPX)
    session.run(
        "pytest", "-n", "2", "-p", "no:cacheprovider", *session.posargs,
        env={"SPOTIFY_HTTP_LIBRARY": "httpx2"},
    )  # fmt: skip


_NO_HTTPX = """
try:
    import httpx
except ImportError:
    print("httpx is not installed: the suite runs on httpx2 alone.")
else:
    raise SystemExit(f"httpx is still importable ({httpx.__file__}): the session proves nothing.")
"""


def _same_as_a_plain_install(session: nox.Session) -> None:
    """Fail when a test tool held one of the package's dependencies back: every distribution a
    plain ``pip install`` of the package would bring must be installed at that version."""
    # Not session.create_tmp(): it sets TMPDIR inside the virtualenv, and tests' tmp_path with
    # it (a module there counts as installed, and its instance folder moves to the venv).
    report = Path(tempfile.mkdtemp(prefix="plain-install-")) / "report.json"
    session.run(
        "python", "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
        "--report", str(report), f".{EXTRAS}",
    )  # fmt: skip
    session.run("python", "-c", _COMPARE, str(report))


_COMPARE = """
import json, sys
from importlib.metadata import PackageNotFoundError, version
from packaging.utils import canonicalize_name
from packaging.version import Version

held = []
for item in json.load(open(sys.argv[1]))["install"]:
    name, wanted = item["metadata"]["name"], item["metadata"]["version"]
    if canonicalize_name(name) == "quart-spotify-auth":
        continue
    try:
        have = version(name)
    except PackageNotFoundError:
        have = "missing"
    if have == "missing" or Version(have) < Version(wanted):
        held.append(f"{name} {have} (a plain install gets {wanted})")
if held:
    sys.exit("The test environment differs from a plain install: " + "; ".join(held))
print("The same versions as a plain install of the package.")
"""


@nox.session
def lowest(session: nox.Session) -> None:
    """The tests against the lowest versions pyproject.toml allows (uv's lowest-direct)."""
    session.install("uv")
    requirements = nox.project.dependency_groups(PYPROJECT, "test")
    session.run(
        "uv", "pip", "install", "--resolution", "lowest-direct", "-e", f".{EXTRAS}",
        *requirements,
    )  # fmt: skip
    # The end-to-end runs (marked slow) are left to the tests session, to keep CI short.
    session.run("pytest", "-n", "2", "-p", "no:cacheprovider", "-m", "not slow", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    _install(session, "bench", "peers", extras=EXTRAS)
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    _install(session)
    session.run("python", "-m", "quart_spotify_auth", "demo", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site into docs/_build/html (warnings are errors), then a look at two
    of its pages in headless Chromium (screenshots in docs/_build/screenshots)."""
    _install(session, "docs", extras=EXTRAS)
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    session.run("python", "docs/screenshots.py", "docs/_build/html", "docs/_build/screenshots")


@nox.session
def package(session: nox.Session) -> None:
    """Build the sdist and the wheel into a fresh dist/ and check their metadata and README
    as a package index renders them (twine check --strict)."""
    import shutil

    shutil.rmtree("dist", ignore_errors=True)
    session.install("build>=1.2", "twine>=6.1")
    session.run("python", "-m", "build", "--outdir", "dist")
    session.run("twine", "check", "--strict", "dist/*")
