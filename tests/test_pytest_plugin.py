"""The pytest plugin, as a user meets it: the samples of docs/testing.md, written to a fresh
folder and run by plain ``pytest`` in its own process, with no configuration (so
pytest-asyncio is in its default strict mode) and the plugin found through its entry point."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def _samples() -> dict[str, str]:
    """The page's python blocks by the heading they are under."""
    page = DOCS.read_text()
    found = {}
    for section in re.split(r"\n## ", page)[1:]:
        code = re.search(r"```python\n(.*?)```", section, re.S)
        if code:
            found[section.splitlines()[0]] = code.group(1)
    return found


def _pytest(
    folder: Path, *args: str, python: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *python, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("heading", ["A Quart app", "A Flask app"])
def test_the_documented_test_files_pass_with_plain_pytest(heading: str, tmp_path: Path) -> None:
    sample = _samples()[heading]
    (tmp_path / "test_app.py").write_text(sample)
    # Strict mode named explicitly: it is pytest-asyncio's default, and the mode the docs promise.
    result = _pytest(tmp_path, "-o", "asyncio_mode=strict")
    assert result.returncode == 0, result.stdout + result.stderr
    expected = len(re.findall(r"^(?:async )?def test_", sample, re.M))
    assert f"{expected} passed" in result.stdout, result.stdout


# What a careful user's suite says: every warning is an error. (pytest-asyncio warns when its
# fixture loop scope is left unset, so such a suite sets it.)
STRICT = """\
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
"""


@pytest.mark.parametrize("heading", ["A Quart app", "A Flask app"])
def test_the_documented_test_files_leave_nothing_open(heading: str, tmp_path: Path) -> None:
    # Under filterwarnings = error, in Python's development mode (which shows every
    # ResourceWarning: a loop or socket left open becomes an "unraisable" warning, an error
    # here): the fake's server and its loop thread close their loop and sockets.
    sample = _samples()[heading]
    (tmp_path / "test_app.py").write_text(sample)
    (tmp_path / "pytest.ini").write_text(STRICT)
    result = _pytest(tmp_path, python=["-X", "dev"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    expected = len(re.findall(r"^(?:async )?def test_", sample, re.M))
    assert f"{expected} passed" in result.stdout, output
    assert "ResourceWarning" not in output and "unclosed" not in output, output


def test_the_fixtures_fail_a_test_when_the_app_is_wrong(tmp_path: Path) -> None:
    # The same file with the app pointed at real Spotify: the login must fail, not pass.
    sample = _samples()["A Quart app"].replace(
        'create_app({"SECRET_KEY": "test", **spotify_config})',
        'create_app({"SECRET_KEY": "test", **spotify_config,'
        ' "SPOTIFY_ACCOUNTS_URL": "https://accounts.spotify.invalid"})',
    )
    (tmp_path / "test_app.py").write_text(sample)
    result = _pytest(tmp_path)
    assert result.returncode == 1 and "failed" in result.stdout, result.stdout


def test_each_test_gets_a_fresh_fake(tmp_path: Path) -> None:
    (tmp_path / "test_fresh.py").write_text(
        "def test_one(spotify_fake):\n"
        "    spotify_fake.revoke('alice')\n"
        "    spotify_fake.requests['x'] += 1\n"
        "    assert spotify_fake.url.startswith('http://127.0.0.1:')\n"
        "def test_two(spotify_fake, spotify_config):\n"
        "    assert spotify_fake.requests['x'] == 0\n"
        "    assert spotify_config['SPOTIFY_ACCOUNTS_URL'] == spotify_fake.url\n"
        "    assert spotify_config['SPOTIFY_TOKEN_STORE'] == 'memory'\n"
    )
    result = _pytest(tmp_path)
    assert result.returncode == 0 and "2 passed" in result.stdout, result.stdout
