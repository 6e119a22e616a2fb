"""Sphinx configuration: `nox -s docs` builds the site into docs/_build/html.

Markdown pages through myst-parser, the API reference from the package's docstrings through
autodoc, the furo theme. Nothing is fetched at build time (no intersphinx inventories).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the package when it is not installed (an editable install wins)

import quart_spotify_auth  # noqa: E402 - after the path is set

project = "quart-spotify-auth"
author = "quart-spotify-auth developers"
copyright = "quart-spotify-auth developers, MIT licence"
release = quart_spotify_auth.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Markdown: headings get anchors (links such as benchmarks.md#soak-...), fenced ```{directive}
# blocks, and ::: fences for notes.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# The docstrings are reST with Google-style sections ("Arguments:").
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True}

pygments_style = "friendly"
pygments_dark_style = "monokai"

html_theme = "furo"
html_title = f"quart-spotify-auth {release}"
html_static_path: list[str] = []
html_theme_options = {"navigation_with_keys": True}

copybutton_prompt_text = r"\$ "
copybutton_prompt_is_regexp = True
