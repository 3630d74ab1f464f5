"""Sphinx configuration for the freshlink documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
"""

from __future__ import annotations

import sys
from pathlib import Path

# Document the source tree next to this file even when freshlink is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import freshlink

project = "freshlink"
author = "freshlink developers"
copyright = "freshlink developers"
release = freshlink.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
# No sphinx.ext.intersphinx: the build must work without network access.

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True}

nitpicky = False

html_theme = "furo"
html_title = f"freshlink {release}"


def _share_inherited_overloads(app: object) -> None:
    """Show the overloads of ``CachedFactory.cached`` on ``Cache.cached`` too.

    autodoc looks an inherited method's overloads up under the subclass's name in the
    defining module, so without this the reference shows ``cached(ttl, **options)`` only.
    """
    from sphinx.pycode import ModuleAnalyzer

    analyzer = ModuleAnalyzer.for_module("freshlink.handles")  # the instance autodoc reuses
    analyzer.analyze()
    analyzer.overloads["Cache.cached"] = analyzer.overloads["CachedFactory.cached"]


def setup(app: object) -> None:
    """Sphinx extension hook of this configuration."""
    app.connect("builder-inited", _share_inherited_overloads)  # type: ignore[attr-defined]
