"""The README as it is shown outside the repository (on a package index): its quickstart is
the example that tests/test_examples.py runs through a login, its commands exist, and it has
no link or image that only works inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_quickstart_is_the_example_that_is_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks == [(ROOT / "examples" / "quickstart.py").read_text()]


def test_the_commands_it_names_exist() -> None:
    noxfile = (ROOT / "noxfile.py").read_text()
    sessions = re.findall(r"^def (\w+)\(session", noxfile, re.M)
    for name in re.findall(r"^nox -s (\w+)$", README, re.M):
        assert name in sessions, name
    assert re.search(r"^nox$", README, re.M)
    assert re.search(r'^nox.options.sessions = \[.*"tests".*\]$', noxfile, re.M)
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith('"$venv/bin/nox"')


def test_no_link_or_image_that_breaks_outside_the_repository() -> None:
    targets = re.findall(r"\]\(([^)]*)\)", README) + re.findall(r'src="([^"]*)"', README)
    assert [target for target in targets if not target.startswith("https://")] == []
