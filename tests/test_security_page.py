"""docs/security.md names the test that holds each defence: every name it gives is a test."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_test_the_security_page_names_exists() -> None:
    page = (ROOT / "docs" / "security.md").read_text()
    named = re.findall(r"`((?:tests/)?test_\w+\.py)?::(test_\w+)", page)
    assert len(named) > 40  # the page still names its tests this way
    missing, file = [], ""
    for given, test in named:  # "::test" alone is in the file named before it
        file = given.removeprefix("tests/") or file
        if not re.search(rf"^(async )?def {test}\(", (ROOT / "tests" / file).read_text(), re.M):
            missing.append(f"{file}::{test}")
    assert missing == []
