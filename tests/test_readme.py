"""The README's testing example runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


async def test_the_readme_testing_example_runs() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## Testing your app") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, Any] = {"__name__": __name__}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    tests = [value for name, value in namespace.items() if name.startswith("test_")]
    assert tests
    for test in tests:
        await test()
