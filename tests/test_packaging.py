"""What the package says about itself agrees everywhere: its version, and the system packages
the tests need."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import quart_spotify_auth

ROOT = Path(__file__).resolve().parent.parent


def test_one_version_everywhere() -> None:
    version = quart_spotify_auth.__version__
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # flit reads the version from __version__: pyproject.toml holds none of its own.
    assert "version" not in project and "version" in project["dynamic"]
    # The installed metadata (nox installs the checkout afresh in each session).
    assert importlib.metadata.version("quart-spotify-auth") == version
    # The newest changelog section is this version.
    changelog = (ROOT / "CHANGELOG.md").read_text()
    newest = re.search(r"^## (\S+)", changelog, re.MULTILINE)
    assert newest is not None and newest.group(1) == version
    # The docs take it from the package, and publish the changelog.
    assert "release = quart_spotify_auth.__version__" in (ROOT / "docs" / "conf.py").read_text()
    page = (ROOT / "docs" / "changelog.md").read_text()
    assert "{include} ../CHANGELOG.md" in page
    assert re.search(r"^changelog$", (ROOT / "docs" / "index.md").read_text(), re.MULTILINE)


def test_the_readme_and_the_docs_list_the_system_packages_ci_installs() -> None:
    ci = set(re.findall(r"need\+=\(([\w.-]+)\)", (ROOT / ".ci" / "run").read_text()))
    assert {"redis-server", "postgresql", "chromium"} <= ci
    for page in (ROOT / "README.md", ROOT / "docs" / "index.md"):
        text = " ".join(page.read_text().split())  # a command may wrap across lines
        commands = re.findall(r"`apt-get install ([\w. -]+)`", text)
        assert commands, page
        for command in commands:
            assert set(command.split()) == ci, (page.name, command)


def test_the_configuration_page_fits_a_laptop_screen() -> None:
    # Its table of keys ran far past a 1,280 px window (rows of 300 characters). Each key is
    # now a term of a definition list ("`KEY` = `default`"), its meaning wrapped beneath.
    from quart_spotify_auth import DEFAULTS

    page = (ROOT / "docs" / "configuration.md").read_text()
    assert not [line for line in page.splitlines() if line.startswith("|")]  # no table
    assert max(len(line) for line in page.splitlines()) <= 100
    for key in DEFAULTS:
        assert re.search(rf"^`{key}` (=|\(required\))", page, re.MULTILINE), key
