"""Sessions: `nox` runs lint, typing and tests; `nox -s bench` the benchmarks; `nox -s demo`
serves the demo on http://127.0.0.1:5000."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typing", "tests", "lowest"]
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
