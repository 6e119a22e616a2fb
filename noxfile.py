"""Sessions: `nox` runs lint, typing, tests, lowest, docs (into docs/_build/html) and package
(the sdist and wheel, checked as a package index would); `nox -s bench` the benchmarks;
`nox -s demo` serves the demo on http://127.0.0.1:5000."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typing", "tests", "lowest", "docs", "package"]
nox.options.reuse_existing_virtualenvs = True

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
    _install(session, "typing", "bench", extras="[redis,flask,postgresql]")
    session.run("mypy", "quart_spotify_auth", "tests", "benchmarks", "examples")


@nox.session
def tests(session: nox.Session) -> None:
    _install(session, "test", extras="[redis,flask,postgresql]")
    session.run(
        "pytest",
        "-n",
        "2",
        "--cov=quart_spotify_auth",
        "--cov-report=term-missing:skip-covered",
        *session.posargs,
    )


@nox.session
def lowest(session: nox.Session) -> None:
    """The tests against the lowest versions pyproject.toml allows (uv's lowest-direct)."""
    session.install("uv")
    requirements = nox.project.dependency_groups(PYPROJECT, "test")
    session.run(
        "uv", "pip", "install", "--resolution", "lowest-direct", "-e", ".[redis,flask,postgresql]",
        *requirements,
    )  # fmt: skip
    # The end-to-end runs (marked slow) are left to the tests session, to keep CI short.
    session.run("pytest", "-n", "2", "-p", "no:cacheprovider", "-m", "not slow", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    _install(session, "bench", extras="[redis,flask,postgresql]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    _install(session)
    session.run("python", "-m", "quart_spotify_auth", "demo", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site into docs/_build/html (warnings are errors), then a look at two
    of its pages in headless Chromium (screenshots in docs/_build/screenshots)."""
    _install(session, "docs", extras="[redis,flask,postgresql]")
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
