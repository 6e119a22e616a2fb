"""docs/architecture.md stays true: it names every module of the package, and every class,
function, method or setting it names still exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from quart_spotify_auth.config import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "quart_spotify_auth"
PAGE = ROOT / "docs" / "architecture.md"

#: A code span that names something: `Name`, `Name.member`, `function()`, `module.py`.
_SPAN = re.compile(r"`([^`\n]+)`")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(\(\))?$")
#: Objects the page calls by their usual variable names.
_INSTANCES = {"spotify": ("SpotifyAuth", "FlaskSpotifyAuth")}


def _modules() -> list[str]:
    return sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "_build" not in path.parts
    )


def _members() -> tuple[dict[str, set[str]], set[str]]:
    """Each class of the package with its members, and every other name the package defines
    (functions and module-level names)."""
    classes: dict[str, set[str]] = {}
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                members = classes.setdefault(node.name, set())
                for base in node.bases:  # inherited members count, by the base's name
                    if isinstance(base, ast.Name):
                        members.add(f"<base>{base.id}")
                for item in ast.walk(node):
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        members.add(item.name)
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        members.add(item.target.id)
                    elif isinstance(item, ast.Attribute) and isinstance(item.ctx, ast.Store):
                        members.add(item.attr)
                    elif isinstance(item, ast.Assign):
                        members.update(t.id for t in item.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return classes, names


def _has(classes: dict[str, set[str]], cls: str, member: str) -> bool:
    members = classes.get(cls, set())
    if member in members:
        return True
    bases = [m[len("<base>") :] for m in members if m.startswith("<base>")]
    return any(_has(classes, base, member) for base in bases)


def _spans() -> list[str]:
    return _SPAN.findall(PAGE.read_text(encoding="utf-8"))


def test_the_page_names_every_module() -> None:
    spans = set(_spans())
    missing = [m for m in _modules() if m not in spans]
    assert not missing, f"docs/architecture.md does not name these modules: {missing}"


def test_every_module_the_page_names_exists() -> None:
    modules = set(_modules())
    named = {s for s in _spans() if s.endswith(".py")}
    gone = sorted(s for s in named if s not in modules and not (ROOT / s).exists())
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"


def _exists(span: str, classes: dict[str, set[str]], names: set[str]) -> bool | None:
    """Whether what ``span`` names is in the package; ``None`` for a span that names nothing
    to look up (a variable, a key, a framework's name, a command)."""
    if span.endswith(".py") or not _DOTTED.match(span):
        return None
    parts = span.removesuffix("()").split(".")
    head = parts[0]
    if head.startswith("SPOTIFY_"):
        return head in DEFAULTS if head != "SPOTIFY_" else None
    if head in _INSTANCES and len(parts) == 2:
        return any(_has(classes, cls, parts[1]) for cls in _INSTANCES[head])
    if head[0].isupper() and not head.isupper():
        return head in classes and all(_has(classes, head, member) for member in parts[1:2])
    if len(parts) == 1 and (span.endswith("()") or head.isupper()):
        return head in names or any(head in members for members in classes.values())
    return None


def test_every_name_the_page_uses_exists() -> None:
    classes, names = _members()
    stale = [span for span in _spans() if _exists(span, classes, names) is False]
    assert not stale, f"docs/architecture.md names what the package no longer has: {stale}"


@pytest.mark.parametrize(
    ("span", "found"),
    [
        ("Refresher", True),
        ("NoSuchClass", False),
        ("TokenRecord.stale", True),
        ("TokenRecord.no_such_member", False),
        ("SPOTIFY_TOKEN_STORE", True),
        ("SPOTIFY_NOT_A_SETTING", False),
        ("spotify.get_access_token()", True),
        ("spotify.no_such_verb()", False),
        ("no_such_function()", False),
    ],
)
def test_the_check_tells_a_stale_name(span: str, found: bool) -> None:
    """The lookup the page test relies on does fail for a name the package lacks."""
    assert _exists(span, *_members()) is found
